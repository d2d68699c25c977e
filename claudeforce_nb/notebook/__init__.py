"""The notebook layer: the `%%agent`, `%agents` and `%workflow` magics, the live result and DAG
widgets, and the one-line errors users see.

Nothing here is imported by `import claudeforce_nb`; `%load_ext claudeforce_nb` imports only
`magics`, and the widgets (with ipywidgets) load on the first cell that shows one.
"""
