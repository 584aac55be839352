"""The Affine layer inside real training: the book's networks, trained end to end (issue 13).

``python -m affbench train`` builds the book's networks from the book's layers, with the Affine
layer from affbench on any implementation, and measures what a faster Affine buys in a whole
training step. Modules, one concern each:

- ``layers``: ReLU, SoftmaxWithLoss, SGD and Momentum, as in the book's common/ code;
- ``networks``: the networks (TwoLayerNet, a deeper MLP, SimpleConvNet's two Affine layers);
- ``data``: scikit-learn's digits (the optional ``train`` extra) and MNIST-shaped synthetic data;
- ``loop``: one training step (with optional laps per part), loss curves, accuracy;
- ``agreement``: the tolerance within which every implementation's loss must follow numpy's;
- ``measure``: time per step with its 95% interval and the Affine share, through affbench.measure.timing;
- ``figures`` and ``output``: the figures and the run directory (train.csv, env.json, report.md).
"""
