"""FID, KID, IS, precision/recall and offline checks. Empty until the metrics work lands."""
