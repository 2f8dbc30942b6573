"""prepare (decode a dataset once to a prepared file) and validate (list every bad file),
behind `fastgan data prepare` and `fastgan data validate`."""
import os
from pathlib import Path

import torch

from fastgan.data import prepared
from fastgan.data._pil import PILDecoder, Samples
from fastgan.data._scan import IMAGE_EXTENSIONS, Source, check_all, extension_problem
from fastgan.data.loader import _decoder_choice, _make_decoder, check_image_settings, decode_all


def _source_path(path):
    if isinstance(path, str) and path == "digits":
        from fastgan.data.digits import digits
        return digits()
    return Path(path).expanduser()


def _inside(source, out):
    """`out`'s name in the listing of folder `source`, or None when it lies outside."""
    if source.is_zip:
        return None
    try:
        rel = Path(os.path.abspath(out)).relative_to(os.path.abspath(source.path))
    except ValueError:
        return None
    return rel.as_posix()


def prepare(path, out, *, resolution=64, crop=None, channels=3, overwrite=False, device=None,
            progress=True):
    """Decodes the dataset at `path` once, with the fastest decoder available, into the
    prepared file `out` (fastgan.data.prepared); returns its manifest. `out` may lie inside
    the source folder: it is left out of the source's listing. An image file's name for `out`
    (set.jpg) is refused: a scan of its folder would take it for an image."""
    out = Path(out).expanduser()
    if out.name.lower().endswith(IMAGE_EXTENSIONS):
        raise ValueError(f"out {str(out)!r} has an image file's extension ({out.suffix}): a scan of its "
                         f"folder would take the prepared file for an image (a bad one); name it "
                         f"*{prepared.SUFFIX}")
    path = _source_path(path)
    if prepared.is_prepared(path):
        raise ValueError(f"{str(path)!r} is already a prepared file")
    if out.exists() and os.path.samefile(out, path):  # even with overwrite: the images would be lost
        raise ValueError(f"out {str(out)!r} is the dataset itself; name another file")
    check_image_settings(resolution, crop, channels)
    if out.exists() and not overwrite:  # before the scan, not after it
        raise ValueError(f"{str(out)!r} exists; pass --overwrite (overwrite=True) to replace it")
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    source = Source(path)
    itself = _inside(source, out)
    checks = check_all(source, crop, channels, progress=progress)
    usable = [k for k, c in enumerate(checks) if c.ok]
    if not usable:
        raise ValueError(f"dataset {str(path)!r}: none of its {len(source.files)} image files is usable "
                         f"(fastgan data validate {str(path)!r} lists why); nothing written")
    skipped = [[n, s, extension_problem(n)] for n, s in zip(source.others, source.other_sizes)
               if n != itself]
    skipped += [[source.files[k], source.sizes[k], c.problem] for k, c in enumerate(checks) if not c.ok]
    files = [source.files[k] for k in usable]
    sizes = [(checks[k].width, checks[k].height) for k in usable]
    formats = [checks[k].format for k in usable]
    name, _ = _decoder_choice(device, formats)
    decoder = _make_decoder(name, Samples(source, files, resolution, crop, channels), sizes, 256,
                            device, min(8, os.cpu_count() or 1), formats)
    failed_at = set()
    with prepared.Writer(out, overwrite=overwrite) as w:
        def sink(start, u8, failed):
            ok = ~failed
            failed_at.update(start + int(j) for j in failed.nonzero().flatten())
            w.write(u8[ok.to(u8.device)] if not ok.all() else u8)

        decode_all(decoder, len(files), sink, progress=progress, desc=f"preparing {path.name}")
        keep = [k for k in range(len(files)) if k not in failed_at]
        if not keep:
            raise ValueError(f"dataset {str(path)!r}: none of its images decodes; nothing written")
        skipped += [[files[k], source.sizes[usable[k]], "corrupt: failed to decode"] for k in sorted(failed_at)]
        labels = None if source.labels is None else [source.labels[usable[k]] for k in keep]
        return w.commit({
            "count": len(keep), "resolution": resolution, "crop": crop, "channels": channels,
            "labels": labels, "classes": source.classes, "source": str(path.resolve()),
            "files": [[files[k], source.sizes[usable[k]]] for k in keep], "skipped": skipped,
            "decoder": name, "inside_source": itself})


def validate(path, *, crop=None, channels=3, resolution=64, num_workers=None, progress=False):
    """Checks every file of a dataset: the header check, then a full PIL decode of the rest.
    Returns {"total", "usable", "bad": [(name, why)], "converted": [(name, note)]}; for a
    prepared file, its manifest and checksum are checked instead (bad lists the reason)."""
    path = _source_path(path)
    check_image_settings(resolution, crop, channels)
    if prepared.is_prepared(path):
        try:
            m = prepared.read_manifest(path)
            prepared.check_source(path, m)
            prepared.load(path, "cpu")
        except ValueError as exc:
            return {"total": 1, "usable": 0, "bad": [(str(path), str(exc))], "converted": [], "prepared": None}
        return {"total": m["count"], "usable": m["count"], "bad": [], "converted": [], "prepared": m}
    source = Source(path)
    checks = check_all(source, crop, channels, progress=progress)
    bad = [(n, extension_problem(n)) for n in source.others]
    bad += [(source.files[k], c.problem) for k, c in enumerate(checks) if not c.ok]
    converted = [(source.files[k], c.note) for k, c in enumerate(checks) if c.ok and c.note]
    usable = [source.files[k] for k, c in enumerate(checks) if c.ok]
    workers = min(8, os.cpu_count() or 1) if num_workers is None else num_workers
    decoder = PILDecoder(Samples(source, usable, resolution, crop, channels), workers, pin_memory=False)
    failed_at = []
    decode_all(decoder, len(usable),
               lambda s, u8, failed: failed_at.extend(s + int(j) for j in failed.nonzero().flatten()),
               progress=progress, desc=f"decoding {path.name}")
    bad += [(usable[k], "corrupt: failed to decode") for k in failed_at]
    failed = {usable[k] for k in failed_at}  # a file found corrupt by its decode is bad, not converted
    converted = [(name, note) for name, note in converted if name not in failed]
    bad.sort()
    total = len(source.files) + len(source.others)
    return {"total": total, "usable": len(usable) - len(failed_at), "bad": bad, "converted": converted,
            "prepared": None}
