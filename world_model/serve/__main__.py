"""``python -m world_model.serve --json CONFIG`` (no Hydra; the embedded launcher, local clusters), else the
Hydra CLI."""

import json
import sys

from world_model.serve.cli import main, role_config, run

if len(sys.argv) == 3 and sys.argv[1] == "--json":
    run(role_config(json.loads(sys.argv[2])))
else:
    main()
