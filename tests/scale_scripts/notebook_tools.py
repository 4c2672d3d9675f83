"""A notebook's cell as a script: tools, a sim/ model and an output type defined in ``__main__``, fanned out.

Run as ``python notebook_tools.py BACKEND MARKER``: BACKEND is ``processes``, ``ray:ADDRESS`` (a running Ray
cluster) or a Dask scheduler's address.
There is deliberately no ``if __name__ == "__main__"`` guard (a notebook has none): every process that
imports this file appends its pid to MARKER, so a worker that ran it again (and fanned out again) shows.
Prints one JSON line: the cells on ``local`` and on BACKEND, and the workers' pids.  On ``processes`` it
exits without ``executor.close()``: the interpreter's exit must stop the workers.
"""

import json
import os
import sys

from pydantic import BaseModel

from executus_nb import Agent, Executor, sim, tool

backend_name, marker = sys.argv[1], sys.argv[2]
with open(marker, "a") as f:
    f.write(f"{os.getpid()}\n")


class Answer(BaseModel):
    key: str
    found: str


@tool
def lookup(key: str) -> str:
    """Look a key up."""
    return f"value of {key} from pid {os.getpid()}"


def researcher(messages, tools):
    """Asks for the tool once, then answers with its result."""
    if messages[-1]["role"] == "tool":
        return sim.reply(json.dumps({"key": messages[1]["content"], "found": messages[-1]["content"]}))
    return sim.call("lookup", key=messages[-1]["content"])


agent = Agent(name="researcher", tools=[lookup], model=sim.function(researcher), output_type=Answer)
prompts = [f"k{i}" for i in range(6)]
executor = Executor()


def cells(fan):
    return [
        {
            "prompt": cell.prompt,
            "status": cell.run.status.value,
            "is_answer": isinstance(cell.run.result.output, Answer),
            "output": cell.run.result.output.model_dump() if cell.run.result.output is not None else None,
            "steps": len(cell.run.result.steps),
            "error": cell.run.result.error.message if cell.run.result.error else None,
        }
        for cell in fan.cells
    ]


local = executor.fanout(agent, prompts).wait(120)
if backend_name == "processes":
    backend = "processes"
elif backend_name.startswith("ray:"):
    import ray

    ray.init(address=backend_name.removeprefix("ray:"), log_to_driver=False)
    backend = "ray"
else:
    from distributed import Client

    backend = Client(backend_name)
remote = executor.fanout(agent, prompts, backend=backend).wait(120)
pids = remote.backend.pids if backend_name == "processes" or backend_name.startswith("ray:") else []
print(json.dumps({"parent": os.getpid(), "local": cells(local), "remote": cells(remote), "pids": pids}), flush=True)
if backend_name != "processes":
    executor.close()  # on Ray: its actors killed; the cluster, connected to here, stays
    if not isinstance(backend, str):
        backend.close()
