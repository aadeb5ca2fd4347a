"""``python -m bioperturb.engines.standalone build <spec.json> <dir> <key>`` (internal).

The build process reads the spec's protocol with :mod:`bioperturb.config` (its checks, its
plugin names), which sits above the engines; so the reader is passed in from here.
"""

import tomllib

from bioperturb.config import protocol_from_mapping
from bioperturb.engines.standalone.program import main


def _read_protocol(text: str):
    return protocol_from_mapping(tomllib.loads(text), "<standalone kernel>")


main(_read_protocol)
