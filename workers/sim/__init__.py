"""The simulated Ollama worker: Ollama's HTTP API with a timing model, for when no GPU is there.

Run it with `python -m workers.sim`, or in-process with `workers.sim.app.run_sim`.
Every response it sends carries `X-Ollama-Simulated: 1`.
"""

# The one line the worker prints to stdout once it listens; launchers read it.
READY_PREFIX = "ghostgate-sim listening on "
