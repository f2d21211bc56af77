"""The first compiled optimizer steps of a fresh job: AdamW, Adam and SGD with momentum with
no state yet (Dynamo creates it while it traces the first step); the optimizer program with
``ZOO_FRESH_STATE=1``."""
import os

os.environ["ZOO_FRESH_STATE"] = "1"

import optimizer  # noqa: E402

run = optimizer.run
EXTRA = optimizer.EXTRA
