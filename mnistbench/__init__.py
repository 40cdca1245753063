"""Library behind the DVC stages in stages/: params, data, model, train, evaluate, files."""
