"""README.md against the code: what it shows must run as shown.

Mechanical checks, no training:
- every `fastgan ...` command line in README's code blocks and inline code parses with the
  CLI's own parser (fastgan.cli.build_parser), placeholders (PATH, DIR, N, ...) replaced by a
  value of the option's type; --set keys are settings some model or the trainer has;
- every bare flag in inline code (`--amp`, `--arch mlp`) is an option of a fastgan subcommand;
- every other command line in a code block is classified by an explicit rule (pip, pytest,
  cmake, bash, python scripts), and the files, flags, extras and stages those name exist;
- every fastgan name the README uses (imports, fastgan.X.Y, calls with their keywords)
  resolves and binds;
- the environment-variable table and the FASTGAN_* variables the package reads agree;
- every repository path the README names exists;
- the defaults it states in tables and prose (models table, built-in dataset, cache budget,
  evaluation, penalties, sample file names) are the code's.
"""
import ast
import contextlib
import importlib
import inspect
import io
import re
import shlex
from pathlib import Path

import pytest

import fastgan
from fastgan.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")

# First words of command lines that are not the fastgan command (explicit: anything else in
# a code block that is not fastgan fails the test, so nothing is skipped silently).
OTHER_TOOLS = {"python3", "python", "pip", "pytest", "cmake", "bash", ".", "tensorboard", "torchrun"}
# Flags in inline code that belong to another tool (pip, pytest), not to fastgan.
OTHER_FLAGS = {"--no-build-isolation": "pip", "--index-url": "pip", "--import-mode=importlib": "pytest"}
# `--set key=value`: the generic form, not a setting.
SET_PLACEHOLDERS = {"key"}


# ---------------------------------------------------------------- README parsing

def _code_blocks():
    """[(lang, text, first line number)] of the fenced code blocks."""
    out = []
    for m in re.finditer(r"^```(\w*)\n(.*?)^```", README, flags=re.S | re.M):
        out.append((m.group(1), m.group(2), README.count("\n", 0, m.start()) + 2))
    return out


def _prose():
    """README with its code blocks blanked (line numbers kept)."""
    return re.sub(r"^```.*?^```", lambda m: "\n" * m.group(0).count("\n"), README, flags=re.S | re.M)


def _inline():
    """[(span, line)] of the inline code spans outside code blocks, whitespace collapsed
    (a span may wrap onto the next line)."""
    prose = _prose()
    return [(" ".join(m.group(1).split()), prose.count("\n", 0, m.start()) + 1)
            for m in re.finditer(r"`([^`]+)`", prose)]


def _block_lines(lang):
    """[(command, line)] of the bash blocks: continuations joined, `a && b` split."""
    out = []
    for block_lang, text, first in _code_blocks():
        if block_lang != lang:
            continue
        lines = text.split("\n")
        i = 0
        while i < len(lines):
            line, no = lines[i], first + i
            while line.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                line = line.rstrip()[:-1] + " " + lines[i]
            i += 1
            tokens = shlex.split(line, comments=True)
            if not tokens:
                continue
            part = []
            for tok in tokens + ["&&"]:
                if tok == "&&":
                    if part:
                        out.append((part, no))
                    part = []
                else:
                    part.append(tok)
    return out


def _strip_env(tokens):
    """(leading VAR=value assignments, the rest)."""
    env = {}
    while tokens and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", tokens[0]):
        k, _, v = tokens[0].partition("=")
        env[k] = v
        tokens = tokens[1:]
    return env, tokens


def _fastgan_argv(tokens):
    """The arguments after `fastgan` (or `... -m fastgan`), or None for another tool."""
    _, tokens = _strip_env(tokens)
    if tokens and tokens[0] == "fastgan":
        return tokens[1:]
    for i in range(len(tokens) - 1):
        if tokens[i] == "-m" and tokens[i + 1] == "fastgan":
            return tokens[i + 2:]
    return None


def _commands():
    """([(argv after fastgan, where)], [(tokens, where)] of other tools, [unclassified]) from
    the bash code blocks and inline code."""
    fastgan_cmds, others, unclassified = [], [], []
    for tokens, no in _block_lines("bash"):
        argv = _fastgan_argv(tokens)
        rest = _strip_env(tokens)[1]
        if argv is not None:
            fastgan_cmds.append((argv, f"README.md:{no} (code block)"))
        elif rest and rest[0] in OTHER_TOOLS:
            others.append((tokens, f"README.md:{no} (code block)"))
        else:
            unclassified.append(f"README.md:{no}: {' '.join(tokens)}")
    for span, no in _inline():
        tokens = shlex.split(span)
        argv = _fastgan_argv(tokens)
        rest = _strip_env(tokens)[1]
        if argv is not None and len(tokens) > 1:
            fastgan_cmds.append((argv, f"README.md:{no} (inline `{span}`)"))
        elif len(rest) > 1 and rest[0] in OTHER_TOOLS:
            others.append((tokens, f"README.md:{no} (inline `{span}`)"))
    return fastgan_cmds, others, unclassified


# ---------------------------------------------------------------- the CLI's parsers

def _subparsers(parser):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            return action.choices
    return {}


def _leaf_parsers():
    """{("train",): parser, ("data", "prepare"): parser, ...}."""
    out = {}
    for name, p in _subparsers(build_parser()).items():
        nested = _subparsers(p)
        if nested:
            for sub, q in nested.items():
                out[(name, sub)] = q
        else:
            out[(name,)] = p
    return out


# What a subcommand needs besides the flags shown (to parse a bare flag in its context).
_REQUIRED = {("sample",): ["--run", "RUN"], ("eval",): ["--run", "RUN"],
             ("data", "prepare"): ["PATH", "--out", "FILE"], ("data", "validate"): ["PATH"]}


def _placeholder(tok):
    """PATH, DIR, N, STATS.npz, RUN/best.pt: a name the reader replaces."""
    return re.fullmatch(r"[A-Z][A-Z0-9_]*([./].*)?", tok) is not None


def _fill(parser, argv):
    """argv with each placeholder option value replaced by a value of the option's type."""
    out = list(argv)
    for i, tok in enumerate(out[:-1]):
        action = parser._option_string_actions.get(tok)
        if action is None or action.nargs == 0 or not _placeholder(out[i + 1]):
            continue
        if action.choices:
            out[i + 1] = str(next(iter(action.choices)))
        elif action.type is int:
            out[i + 1] = "1"
        elif action.type is float:
            out[i + 1] = "0.5"
    return out


def _with_values(parser, tokens):
    """A bare flag span names an option without its value (`--num`): a placeholder VALUE
    stands in for it."""
    out = []
    for i, tok in enumerate(tokens):
        out.append(tok)
        action = parser._option_string_actions.get(tok)
        if action is not None and action.nargs != 0 and (i + 1 == len(tokens) or tokens[i + 1].startswith("--")):
            out.append("VALUE")
    return out


def _parse(argv):
    """(exit status or None, parsed args or None, stderr) of fastgan's parser on argv."""
    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            return None, build_parser().parse_args(argv), err.getvalue()
    except SystemExit as exc:
        return exc.code, None, err.getvalue()


def _known_settings():
    from fastgan import models
    from fastgan.models.base import COMMON
    from fastgan.train.config import TRAIN_KEYS
    keys = set(COMMON) | set(TRAIN_KEYS)
    for name in models.names():
        keys |= set(models.get(name).defaults)
    return keys


def _check_sets(sets, where):
    known = _known_settings()
    for item in sets or ():
        key = item.partition("=")[0].strip().replace("-", "_")
        if key in SET_PLACEHOLDERS:
            continue
        assert key in known, f"{where}: --set {item}: {key!r} is no setting of any model or the trainer"


FASTGAN_CMDS, OTHER_CMDS, UNCLASSIFIED = _commands()


def test_the_extractor_finds_the_commands():
    # every line of a bash block is fastgan or one of OTHER_TOOLS: none is skipped unseen
    assert UNCLASSIFIED == [], f"neither fastgan nor one of {sorted(OTHER_TOOLS)}: classify them here"
    # not vacuous: the README's command lines are found, in blocks and inline
    assert len(FASTGAN_CMDS) >= 20, FASTGAN_CMDS
    assert sum("code block" in w for _, w in FASTGAN_CMDS) >= 10
    shown = [" ".join(argv) for argv, _ in FASTGAN_CMDS]
    assert "train --model wgan-gp --amp" in shown                          # the quick start
    assert any(s.startswith("train --model wgan-gp --data celeba64.fgimg --eval-every 5000") for s in shown)  # a \ continuation
    assert any(s.startswith("train --model wgan-gp --data celeba64.fgimg --amp") for s in shown)  # torchrun -m fastgan
    assert "info" in shown                                                 # after `&&`
    assert "data validate PATH" in shown
    assert len(OTHER_CMDS) >= 10, OTHER_CMDS


@pytest.mark.parametrize("argv,where", FASTGAN_CMDS, ids=[w for _, w in FASTGAN_CMDS])
def test_fastgan_command_parses(argv, where):
    leaves = _leaf_parsers()
    assert argv, f"{where}: no subcommand"
    if _placeholder(argv[0]):  # `fastgan COMMAND --help`: every subcommand takes the flags
        for key in leaves:
            code, _, err = _parse(list(key) + argv[1:])
            assert code in (None, 0), f"{where}: fastgan {' '.join(key)} {' '.join(argv[1:])}: {err}"
        return
    key = next((k for k in leaves if tuple(argv[:len(k)]) == k), None)
    if key is None and argv[0] in ("--help", "--version"):
        code, _, err = _parse(argv)
        assert code == 0, f"{where}: {err}"
        return
    assert key is not None, f"{where}: fastgan has no subcommand {argv[0]!r} (it has {sorted(leaves)})"
    if len(argv) == len(key) and "inline" in where:
        return  # prose naming a subcommand (`fastgan sample`): it exists; a command line must parse whole
    for tok in argv[len(key):]:  # whole option names: argparse would also take an abbreviation
        assert not tok.startswith("--") or tok.split("=")[0] in leaves[key]._option_string_actions, \
            f"{where}: fastgan {' '.join(key)} has no option {tok}"
    full = list(key) + _fill(leaves[key], argv[len(key):])
    code, args, err = _parse(full)
    if "--help" in argv:
        assert code == 0, f"{where}: {err}"
        return
    assert code is None, f"{where}: `fastgan {' '.join(argv)}` does not parse: {err.strip()}"
    assert args.func is not None
    _check_sets(getattr(args, "set", None), where)
    from fastgan import models
    if getattr(args, "model", None) is not None:
        assert args.model in models.names(), f"{where}: no model {args.model!r}"
        if args.arch is not None:
            assert args.arch in models.get(args.model).archs, f"{where}: {args.model} has no arch {args.arch!r}"
        if not args.resume:  # the settings resolve for that model, as `fastgan train` does it
            from fastgan.train import config as cfgmod
            cfgmod.resolve(args.model, cfgmod.parse_set(args.set))
    if getattr(args, "metrics", None) and not _placeholder(args.metrics):
        from fastgan.metrics.evaluate import parse_metrics
        parse_metrics(args.metrics)


def _bare_flags():
    out = []
    for span, no in _inline():
        if span.startswith("--"):
            out.append((shlex.split(span), f"README.md:{no} (`{span}`)"))
    return out


BARE_FLAGS = _bare_flags()


def test_bare_flags_found():
    assert len(BARE_FLAGS) >= 30
    assert ["--arch", "resnet"] in [t for t, _ in BARE_FLAGS]


@pytest.mark.parametrize("tokens,where", BARE_FLAGS, ids=[w for _, w in BARE_FLAGS])
def test_bare_flag_is_a_fastgan_option(tokens, where):
    if tokens[0] in OTHER_FLAGS:
        return
    leaves = _leaf_parsers()
    flags = [t for t in tokens if t.startswith("--")]
    homes = [k for k, p in leaves.items() if all(f in p._option_string_actions for f in flags)]
    assert homes, f"{where}: no fastgan subcommand takes {' '.join(flags)}"
    errors = []
    for key in homes:  # with the values shown, in some subcommand that takes them all
        code, args, err = _parse(list(key) + _REQUIRED.get(key, []) + _fill(leaves[key], _with_values(leaves[key], tokens)))
        if code is None:
            _check_sets(getattr(args, "set", None), where)
            if getattr(args, "arch", None) is not None:
                from fastgan import models
                assert any(args.arch in models.get(n).archs for n in models.names()), \
                    f"{where}: no model has arch {args.arch!r}"
            return
        errors.append(err.strip())
    pytest.fail(f"{where}: does not parse: {errors}")


# ---------------------------------------------------------------- other tools' command lines

def _pyproject():
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.mark.parametrize("tokens,where", OTHER_CMDS, ids=[w for _, w in OTHER_CMDS])
def test_other_command_names_what_exists(tokens, where):
    env, rest = _strip_env(tokens)
    tool, args = rest[0], rest[1:]
    for var in env:  # an environment switch on the command line is one the code reads
        if var.startswith("FASTGAN_"):
            scripts = [ROOT / a for a in args if a.endswith(".py")]
            assert var in TABLE_VARS or any(var in s.read_text() for s in scripts if s.is_file()), \
                f"{where}: {var} is read by neither fastgan nor the script"
    if tool in ("python", "python3") and args and args[0].endswith(".py"):
        script = ROOT / args[0]
        assert script.is_file(), f"{where}: {args[0]} does not exist"
        text = script.read_text()
        for flag in (a.split("=")[0] for a in args[1:] if a.startswith("--")):
            assert f'"{flag}"' in text, f"{where}: {args[0]} has no option {flag}"
    elif tool == "bash":
        script = ROOT / args[0]
        assert script.is_file(), f"{where}: {args[0]} does not exist"
        if script.name == "gpu_suite.sh" and len(args) > 1:
            stages = re.search(r'case "\$STAGE" in ([\w|]+)\)', script.read_text()).group(1).split("|")
            assert args[1] in stages, f"{where}: gpu_suite.sh has no stage {args[1]!r} ({stages})"
    elif tool == "pip":
        extras = set(_pyproject()["project"]["optional-dependencies"])
        for a in args:
            m = re.fullmatch(r"(?:\.|fastgan)\[([\w,-]+)\]", a)
            if m:
                missing = set(m.group(1).split(",")) - extras
                assert not missing, f"{where}: pyproject.toml has no extra {sorted(missing)}"
            if a.startswith("constraints/"):
                assert (ROOT / a).is_file(), f"{where}: {a} does not exist"
    elif tool == "cmake":
        cmake = (ROOT / "CMakeLists.txt").read_text()
        for a in args:
            m = re.fullmatch(r"-D(FASTGAN_\w+)=\w+", a)
            if m:
                assert re.search(rf"option\(\s*{m.group(1)}\b", cmake), f"{where}: CMakeLists.txt has no option {m.group(1)}"
    elif tool == "pytest":
        markers = " ".join(_pyproject()["tool"]["pytest"]["ini_options"]["markers"])
        for i, a in enumerate(args):
            if a == "-m":
                assert f"{args[i + 1]}:" in markers, f"{where}: no pytest marker {args[i + 1]!r}"
            elif not a.startswith("-") and "/" in a and (i == 0 or args[i - 1] != "-m"):
                assert (ROOT / a.rstrip(".")).exists(), f"{where}: {a} does not exist"


# ---------------------------------------------------------------- fastgan's Python names

def _resolve(dotted):
    """The object `fastgan.a.b.c` names, importing submodules as needed; AttributeError if none."""
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            obj = importlib.import_module(".".join(parts[:i + 1]))  # ModuleNotFoundError: not there
    return obj


def _dotted(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id] + parts[::-1])
    return None


def _check_call(call, names, where):
    """The call binds to the signature of the fastgan callable it names (placeholders `...` as
    leading positionals: only the keywords are checked)."""
    dotted = _dotted(call.func)
    if dotted is None:
        return
    head = dotted.split(".")[0]
    if head == "fastgan":
        target = dotted
    elif head in names:
        target = names[head] + dotted[len(head):]
    else:
        return
    obj = _resolve(target)
    if not callable(obj):
        return
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return
    if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
        return
    kwargs = {k.arg: None for k in call.keywords}
    elided = any(isinstance(a, ast.Constant) and a.value is Ellipsis for a in call.args)
    try:
        if elided:
            sig.bind_partial(**kwargs)
        else:
            sig.bind(*[None] * len(call.args), **kwargs)
    except TypeError as exc:
        pytest.fail(f"{where}: {ast.unparse(call)} does not fit {target}{sig}: {exc}")


def _check_tree(tree, where, names=None):
    """Imports from fastgan, fastgan.X.Y attribute chains and calls of fastgan callables."""
    names = dict(names or {})
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "fastgan":
            for alias in node.names:
                _resolve(f"{node.module}.{alias.name}")
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "fastgan":
                    importlib.import_module(alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            d = _dotted(node)
            if d and d.split(".")[0] == "fastgan":
                try:
                    _resolve(d)
                except (AttributeError, ImportError) as exc:
                    pytest.fail(f"{where}: {d} does not resolve: {exc}")
        if isinstance(node, ast.Call):
            _check_call(node, names, where)
    return names


def _python_blocks():
    return [(text, first) for lang, text, first in _code_blocks() if lang == "python"]


def _commented_calls(text, names):
    """Calls of imported fastgan names inside comments (`# gradient_penalty(critic, real, ...)`)."""
    out = []
    for comment in re.findall(r"#(.*)$", text, flags=re.M):
        for m in re.finditer(r"\b([A-Za-z_]\w*)\(", comment):
            if m.group(1) not in names:
                continue
            depth, end = 0, None
            for j in range(m.end() - 1, len(comment)):
                depth += {"(": 1, ")": -1}.get(comment[j], 0)
                if depth == 0:
                    end = j + 1
                    break
            if end is not None:
                out.append(comment[m.start():end])
    return out


def test_python_blocks_resolve_and_bind():
    blocks = _python_blocks()
    assert len(blocks) >= 5
    checked_comments = 0
    for text, first in blocks:
        where = f"README.md:{first} (python block)"
        tree = ast.parse(text)
        names = _check_tree(tree, where)
        for expr in _commented_calls(text, names):
            _check_tree(ast.parse(expr), f"{where}, comment `{expr}`", names)
            checked_comments += 1
    assert checked_comments >= 3  # gradient_penalty's modes, RMSpropClip(clip_param_groups(...))


def _inline_python():
    out = []
    for span, no in _inline():
        if re.match(r"fastgan\.\w", span):
            out.append((span, f"README.md:{no} (`{span}`)"))
    return out


INLINE_PYTHON = _inline_python()


def test_inline_python_found():
    assert len(INLINE_PYTHON) >= 30


@pytest.mark.parametrize("span,where", INLINE_PYTHON, ids=[w for _, w in INLINE_PYTHON])
def test_inline_python_name_resolves(span, where):
    name = re.match(r"fastgan(\.\w+)+", span).group(0)
    if name == "fastgan._C" and fastgan._ext.module() is None:
        pytest.skip(f"the extension is not loaded here: {fastgan._ext.error()}")
    try:
        _resolve(name)
    except (AttributeError, ImportError) as exc:
        pytest.fail(f"{where}: {name} does not resolve: {exc}")
    if "(" in span:  # `f(x, weight=, center=)`: keywords without values are the README's shorthand
        call = re.sub(r"(\w+)=(?=\s*[,)])", r"\1=...", span[:_balanced_end(span)])
        _check_tree(ast.parse(call), where)


def _balanced_end(text):
    depth = 0
    for i, c in enumerate(text):
        depth += {"(": 1, ")": -1}.get(c, 0)
        if c == ")" and depth == 0:
            return i + 1
    return len(text)


def test_names_given_with_their_module():
    # `A`, `B` in `fastgan/x/y.py`
    found = 0
    prose = " ".join(_prose().split())
    for m in re.finditer(r"((?:`\w+`,\s*)*`\w+`)\s+in\s+`(fastgan/[\w/]+)\.py`", prose):
        module = _resolve(m.group(2).replace("/", "."))
        for name in re.findall(r"`(\w+)`", m.group(1)):
            assert hasattr(module, name), f"README: {name} is not in {m.group(2)}.py"
            found += 1
    assert found >= 3  # SampleNorm, mean_pool2, HYPERPARAMETER_CHECKS
    # the Layout block: `fastgan/nn/   Name, Name, ...`
    layout = next(text for lang, text, _ in _code_blocks() if lang == "" and "csrc/ops.cpp" in text)
    listed = 0
    for line in layout.splitlines():
        m = re.fullmatch(r"(fastgan/\w+)/\s+([A-Za-z_]\w*(?:, [A-Za-z_]\w*)+)", line.strip())
        if m:
            module = _resolve(m.group(1).replace("/", "."))
            for name in m.group(2).split(", "):
                assert hasattr(module, name), f"README layout: {name} is not in {m.group(1)}"
                listed += 1
    assert listed >= 8
    # the Evaluation section's Python bullet: `fastgan.metrics.fid_from_features`, `kid_from_features`, ...
    bullet = re.search(r"- \*\*Python\*\*:(.*?)(?=\n- \*\*)", README, flags=re.S).group(1)
    names = re.findall(r"`(?:fastgan\.metrics\.)?([A-Za-z_]\w*)`", bullet)
    assert len(names) >= 8
    for name in names:  # the functions, also after their submodules are imported (evaluate does)
        module = fastgan.metrics._EXPORTS.get(name)
        if module is not None:
            importlib.import_module(f"fastgan.metrics.{module}")
        obj = getattr(fastgan.metrics, name, None)
        assert callable(obj) and not inspect.ismodule(obj), f"README: fastgan.metrics.{name} is {obj!r}"


# Names the README gives without their module, next to one that has it.
SHORT_NAMES = {
    "ConvBNLeakyReLU": "fastgan.nn.ConvBNLeakyReLU",
    "ResNetCritic": "fastgan.nn.ResNetCritic",
    "ReLU": "fastgan.nn.activation.ReLU",
    "RMSpropClip": "fastgan.optim.RMSpropClip",
    'toy.coverage(samples, "ring8")': "fastgan.data.toy.coverage",
    "loader.state_dict()": "fastgan.data.ImageLoader.state_dict",
    "load_state_dict": "fastgan.data.ImageLoader.load_state_dict",
}


@pytest.mark.parametrize("short", SHORT_NAMES)
def test_short_names_resolve(short):
    assert short in README
    _resolve(SHORT_NAMES[short])


def test_notebook_example_runs_without_training(tmp_path):
    """The Python example's model as it builds it; a run of it (written here, not trained)
    loads as the example says: g(g.sample_z(16)) is [16, 1, 32, 32] in [-1, 1], eval mode;
    `fastgan sample --interpolate` names its file as the Training section says."""
    import torch
    from fastgan.cli import main
    from fastgan.train import checkpoint as ckpt
    from fastgan.train import config as cfgmod

    text = next(t for t, _ in _python_blocks() if "fastgan.models.build(" in t)
    call = next(n for n in ast.walk(ast.parse(text))
                if isinstance(n, ast.Call) and _dotted(n.func) == "fastgan.models.build")
    name = ast.literal_eval(call.args[0])
    kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    model = fastgan.models.build(name, **kwargs)
    run = tmp_path / "nb"
    run.mkdir()
    config = cfgmod.resolve(name, kwargs)
    cfgmod.save_config(config, run / "config.yaml")
    ckpt.save_checkpoint(run, 7, {"generator": model.generator.state_dict(), "ema": None,
                                  "step": 7, "config": {k: cfgmod.plain(v) for k, v in config.items()}})

    g = fastgan.load_generator(run)
    assert not g.training
    with torch.no_grad():
        images = g(g.sample_z(16))
    assert tuple(images.shape) == (16, 1, 32, 32)   # README: [16, 1, 32, 32] in [-1, 1]
    assert images.min() >= -1 and images.max() <= 1
    assert "backends" in fastgan.info()               # fastgan.info()["backends"]

    # README: fastgan sample --run runs/celeba --num 64 --interpolate  # runs/celeba/samples/sample_step<STEP>_seed0_interp.png
    line = next(argv for argv, _ in FASTGAN_CMDS if argv[:1] == ["sample"] and "--interpolate" in argv)
    shown = re.search(r"--interpolate\s+#\s*(\S+)", README).group(1)
    argv = list(line)
    argv[argv.index("--run") + 1] = str(run)
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(argv) == 0
    pattern = re.escape(Path(shown).name).replace(re.escape("<STEP>"), r"\d+")
    written = [p.name for p in (run / "samples").iterdir()]
    assert len(written) == 1 and re.fullmatch(pattern, written[0]), (written, shown)


# ---------------------------------------------------------------- environment variables

def _env_table():
    section = README.split("## Environment variables", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for m in re.finditer(r"^\| `(\w+)` \| ([^|]*) \|", section, flags=re.M):
        rows[m.group(1)] = re.findall(r"`([^`]+)`", m.group(2))
    return rows


TABLE_VARS = _env_table()


def _vars_read():
    """FASTGAN_* variables read from the environment by fastgan/ and setup.py: literals on a
    line that reads the environment (os.environ, getenv, setup.py's _switch), directly or
    through a module constant."""
    read = {}
    for path in sorted((ROOT / "fastgan").rglob("*.py")) + [ROOT / "setup.py"]:
        text = path.read_text()
        consts = dict(re.findall(r"^(\w+)\s*=\s*[\"'](FASTGAN_\w+)[\"']", text, flags=re.M))
        for line in text.splitlines():
            if not re.search(r"environ|getenv|_switch\(", line) or line.lstrip().startswith("#"):
                continue
            for var in re.findall(r"[\"'](FASTGAN_\w+)[\"']", line):
                read.setdefault(var, path.relative_to(ROOT))
            for ident, var in consts.items():
                if re.search(rf"\b{ident}\b", line):
                    read.setdefault(var, path.relative_to(ROOT))
    return read


def test_environment_table_matches_what_is_read():
    read = _vars_read()
    table = {v for v in TABLE_VARS if v.startswith("FASTGAN_")}
    assert len(table) >= 8 and len(read) >= 8
    assert table - set(read) == set(), f"in README's table but read nowhere in fastgan/: {table - set(read)}"
    assert set(read) - table == set(), f"read by {sorted(read.items())} but not in README's table"
    assert tuple(TABLE_VARS["FASTGAN_BACKEND"]) == fastgan.BACKENDS
    assert TABLE_VARS["FASTGAN_CPU_ISA"] == ["base", "avx2", "avx512"]
    isa = (ROOT / "csrc/cpu/isa.cpp").read_text()
    assert all(f'"{name}"' in isa for name in TABLE_VARS["FASTGAN_CPU_ISA"])


# ---------------------------------------------------------------- paths

def _paths():
    text = _prose() + "\n".join(t for lang, t, _ in _code_blocks() if lang in ("", "bash"))
    found = set(re.findall(r"(?<![\w./$<-])((?:benchmarks|fastgan|tests|csrc|kernels|constraints|docs)/[\w./<>*-]*)", text))
    found |= set(re.findall(r"`(\w+\.(?:txt|toml))`", text))
    return sorted({p.rstrip(".") or p for p in found})


def test_named_paths_exist():
    paths = _paths()
    assert len(paths) >= 30, paths
    for must in ("benchmarks/gpu_session.sh", "fastgan/nn/mlp.py", "tests/models/test_mixture.py", "constraints/cpu.txt"):
        assert must in paths
    missing = [p for p in paths if not list(ROOT.glob(re.sub(r"<\w+>", "*", p).rstrip("/") or "."))]
    assert not missing, f"README names paths that do not exist: {missing}"
    # benchmarks/ in the Layout block: its files and folders
    layout = next(text for lang, text, _ in _code_blocks() if lang == "" and "csrc/ops.cpp" in text)
    items = re.search(r"benchmarks/\s+(.*)$", layout, flags=re.M).group(1).split(", ")
    named = [i for i in items if "." in i or i.endswith("/")]
    assert len(named) >= 5
    assert [i for i in named if not (ROOT / "benchmarks" / i).exists()] == []


# ---------------------------------------------------------------- defaults stated in the README

def test_models_table_is_the_code_table():
    from fastgan import models
    table = models.table(markdown=True).strip().splitlines()
    assert "\n".join(table) in README, "README's model table differs from fastgan.models.table(markdown=True)"
    for name in models.names():  # "cited beside each in fastgan/models/<name>.py"
        assert (ROOT / "fastgan" / "models" / f"{name.replace('-', '_')}.py").is_file()


def test_training_defaults():
    from fastgan.train import graphs
    from fastgan.train.config import DATASET_DEFAULTS, TRAIN_DEFAULTS
    from fastgan.train.trainer import default_run_dir
    # "digits ... at 16 × 16, one channel, generator and critic of width 32, 5,000 steps, EMA 0.999"
    assert {k: DATASET_DEFAULTS["digits"][k] for k in ("resolution", "channels", "g_width", "d_width", "steps", "ema")} \
        == {"resolution": 16, "channels": 1, "g_width": 32, "d_width": 32, "steps": 5000, "ema": 0.999}
    # "--data ring8 picks --arch mlp, resolution 1, 2 channels and --lr-schedule linear"
    for toy in ("ring8", "grid25"):
        assert {k: DATASET_DEFAULTS[toy][k] for k in ("arch", "resolution", "channels", "lr_schedule")} \
            == {"arch": "mlp", "resolution": 1, "channels": 2, "lr_schedule": "linear"}
    assert TRAIN_DEFAULTS["lr_schedule"] == "constant"
    assert default_run_dir({"model": "wgan-gp"}) == Path("runs/wgan-gp")
    assert graphs.WARMUP_STEPS == 3  # "captured after 3 eager steps"


def test_data_and_eval_defaults():
    from fastgan.data import CACHE_BUDGET, DEFAULT_DATASET, toy
    from fastgan.metrics import evaluate, kid_from_features, inception_score, precision_recall
    assert CACHE_BUDGET == {"cuda": 1 << 30, "cpu": 256 << 20}  # "fits 1 GiB on a GPU (256 MiB on CPU)"
    assert DEFAULT_DATASET == "digits"
    assert toy.DEFAULT_STD == {"ring8": 0.02, "grid25": 0.05}
    leaves = _leaf_parsers()
    assert leaves[("eval",)].get_default("batch_size") == 250
    assert (evaluate.DEFAULT_NUM, evaluate.DEFAULT_NUM_OFFLINE, evaluate.DEFAULT_REF_NUM) == (50_000, 10_000, 50_000)
    kid = inspect.signature(kid_from_features).parameters
    assert (kid["num_subsets"].default, kid["subset_size"].default) == (100, 1000)
    assert inspect.signature(inception_score).parameters["splits"].default == 10
    pr = inspect.signature(precision_recall).parameters
    assert (pr["k_pr"].default, pr["k_dc"].default) == (3, 5)
    # the metrics table names every metric there is
    section = README.split("## Evaluation", 1)[1].split("\n## ", 1)[0]
    assert tuple(re.findall(r"^\| `(\w+)` \|", section, flags=re.M)) == evaluate.METRICS


def test_op_defaults():
    from fastgan.ops import began_loss, gradient_penalty, perturb
    gp = inspect.signature(gradient_penalty).parameters
    assert (gp["mode"].default, gp["weight"].default, gp["perturb_scale"].default) == ("wgan-gp", 10.0, 0.5)
    assert inspect.signature(perturb).parameters["scale"].default == 0.5
    bl = inspect.signature(began_loss).parameters
    assert (bl["gamma"].default, bl["lambda_k"].default) == (0.5, 0.001)  # "gamma 0.5, lambda_k 0.001"


@pytest.mark.parametrize("section,function", [
    ("### The gradient penalty", "fastgan.ops.gradient_penalty"),   # `scaler=`, `generator=`
    ("## Data", "fastgan.data.make_loader"),                        # `crop=None`, `channels=1`, `backend=`, `shard=...`
])
def test_keywords_named_in_prose(section, function):
    prose = _prose().split("\n" + section, 1)[1].split("\n", 1)[1]
    prose = prose[:prose.find("\n#")]  # to the next heading
    keys = {m.group(1) for m in re.finditer(r"`([a-z_]\w*)=[^`]*`", prose)}
    assert len(keys) >= 2, keys
    params = inspect.signature(_resolve(function)).parameters
    assert keys <= set(params), f"README names {sorted(keys - set(params))} as keywords of {function}"


# ---------------------------------------------------------------- the trainer's settings table

def _settings_rows():
    block = re.search(r"<!-- trainer-settings -->\n(.*?)<!-- /trainer-settings -->", README, flags=re.S)
    assert block, "README has no trainer-settings table"
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in block.group(1).splitlines() if line.strip().startswith("| `")]
    return [(key.strip("`"), re.findall(r"`(--[\w-]+)`", flag), default) for key, flag, default, _ in rows]


def _train_actions():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices["train"]._actions


def test_trainer_settings_table_is_the_code_table():
    """Every trainer setting, in TRAIN_DEFAULTS' order, with its default and its flags: a
    setting added, renamed or given another default or flag fails here until the table says so."""
    import yaml

    from fastgan.train.config import TRAIN_DEFAULTS

    rows = _settings_rows()
    assert [key for key, _, _ in rows] == list(TRAIN_DEFAULTS)
    by_flag = {opt: a.dest for a in _train_actions() for opt in a.option_strings}
    for key, flags, default in rows:
        if default != "(required)":
            assert yaml.safe_load(default.strip("`")) == TRAIN_DEFAULTS[key], (key, default)
        else:
            assert TRAIN_DEFAULTS[key] is None, key
        assert all(by_flag.get(f) in (key, f"no_{key}") for f in flags), (key, flags)
        # a flag of the setting that the table leaves out (--no-cuda-graphs is --cuda-graphs' pair)
        others = {f for f, dest in by_flag.items() if dest in (key, f"no_{key}") and f not in flags}
        assert others <= {"--no-cuda-graphs"}, (key, others)
