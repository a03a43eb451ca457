"""``python -m world_model.serve --json CONFIG`` (no Hydra; the embedded launcher), else the Hydra CLI."""

import json
import sys

from world_model.serve.cli import main, run, server_config

if len(sys.argv) == 3 and sys.argv[1] == "--json":
    run(server_config(json.loads(sys.argv[2])))
else:
    main()
