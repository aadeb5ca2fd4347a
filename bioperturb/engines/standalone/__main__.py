"""``python -m bioperturb.engines.standalone build <spec.json> <dir> <key>`` (internal)."""

from bioperturb.engines.standalone.program import main

main()
