"""Analytics over the metrics frame: tables (`frames`, public as `cf.analytics`), Plotly charts
(`plots`, public as `cf.plots`), the notebook dashboard (`dashboard`) and the terminal verbs
(`cli`). Nothing is imported here, so `import claudeforce_nb` stays free of pandas and plotly."""
