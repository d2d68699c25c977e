"""The engine: orchestrator facade, routing, selection, skills, cache, workflows, batch jobs,
resilience. Works from a plain script: nothing here imports IPython or ipywidgets."""
