"""xsharp's algorithm tier in a notebook: load data, build, train, evaluate, save, load, predict.

Everything here runs in this process on NumPy (or CuPy with device="gpu"); nothing on this path
imports Ray. Run it as ``python examples/notebook.py [MODEL.npz]``, or paste it cell by cell.
"""

import sys
import tempfile
from pathlib import Path

from xsharp.algos import Model, PretrainSpec, datasets, train

# 1. Data: scikit-learn's 8x8 handwritten digits, split reproducibly (the seed) into training,
#    validation and test rows. `data.x_train` is float32 (rows, 8, 8), `data.y_train` the labels.
data = datasets.load("digits", seed=0)
print(data)

# 2. A model: a stack of modules, input first, the softmax classifier last; the same list a job
#    spec's `model:` holds. Here a small deep belief net: one RBM of 128 hidden units, then
#    softmax. The input shape, the number of classes and their names come from the data.
model = Model([{"rbm": {"hidden": 128}}, {"softmax": {}}], data=data, seed=0)
print(model)

# 3. Train: the RBM is pretrained unsupervised for 5 epochs (contrastive divergence), then the
#    whole stack is fine-tuned with minibatch SGD + momentum on the labels. The settings are
#    those of a job spec's `train:` section, by name; `pretrain` those of its `pretrain:`.
history = train(model, data, epochs=10, batch_size=32, learning_rate=0.1, pretrain=PretrainSpec(epochs=5), seed=0)
last = history.finetune[-1]
print(f"epoch {last['epoch']}: loss {last['loss']:.4f}, validation accuracy {last['val_accuracy']:.4f}")

# 4. Evaluate on the test rows, which training never saw.
print(f"test accuracy: {model.accuracy(data.x_test, data.y_test):.4f}")

# 5. Save: parameters, architecture and class names in one .npz file; then load it back, as a
#    later session (or `xsharp predict`, or `xsharp serve`) would.
with tempfile.TemporaryDirectory() as tmp:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tmp) / "digits-dbn.npz"
    model.save(path)
    loaded = Model.load(path)

# 6. Predict: class indices for a few test rows, shown by name beside the true labels, and the
#    probabilities of the first row's classes.
rows = data.x_test[:5]
predicted = loaded.predict(rows)
print("predicted:", [loaded.classes[i] for i in predicted])
print("true:     ", [loaded.classes[i] for i in data.y_test[:5]])
print("P(class | first row):", [round(float(p), 3) for p in loaded.predict_proba(rows[:1])[0]])
