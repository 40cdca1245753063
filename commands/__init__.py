"""The commands a user runs beside the pipeline: `mnistbench <command>`, or `python -m commands.<module>`.

    gate          the accuracy gate: did the replicates' mean really drop against a baseline?
    reproduced    did a rerun reproduce the committed results, byte for byte?
    grid          a grid of `dvc exp run`s, in turn or as Ray tasks
    leaderboard   committed runs and experiments, ranked, with ties to the best marked
    predict       classify image files with the trained model
    plots-template  rebuild the offline page template `dvc plots show` uses

They read the library (mnistbench/) and never the lab (lab/): deleting the lab leaves them whole.
"""
