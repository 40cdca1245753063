"""The lab: the instruments that measured this project's claims, their records, and the render
that puts the records' figures into README.md and docs/.

    python -m lab.bench              # training speed, side by side with the seed's loop
    python -m lab.bench_replicates   # what n seeds cost against one
    python -m lab.bench_grid         # what Ray buys a grid
    python -m lab.gate_power         # the gate's false alarms and detections, measured
    python -m lab.variance           # where the default model's variance comes from
    python -m lab.sweep --record     # validation accuracy per epoch: how the epochs were chosen
    python -m lab.pipelines          # what each pipeline costs
    python -m lab.faults             # the faults battery, timed
    python -m lab.tiers              # how long each tier of tests takes
    python -m lab.render [--check]   # the records, rendered into the docs

Each command writes lab/records/<name>.json (lab/record.py): its figures, its command line, the
machine and the date. Nothing outside lab/ imports it: delete the folder and the pipelines, the
commands and their tests work as before (the rendered figures then stay as last rendered).
"""
