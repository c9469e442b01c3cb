"""Iris, a small PyTorch MLP (CPU), logged as TorchScript so serving needs no class code."""
import argparse

import mlflow
import numpy as np
import pandas as pd
import torch
from torch import nn

from home_mlops.training import log_model, prepare

APP = "tabular-iris-pytorch"


class IrisClassifier(nn.Module):
    """Trains on logits, predicts the class index (what the other iris apps answer)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 3))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.argmax(self.net(x), dim=1)


parser = argparse.ArgumentParser()
parser.add_argument("--hidden", type=int, default=16)
parser.add_argument("--epochs", type=int, default=200)
parser.add_argument("--seed", type=int, default=42)
args = parser.parse_args()

torch.manual_seed(args.seed)
X_train, X_test, y_train, y_test = prepare(APP, "iris", args.seed)
X_train, X_test = X_train.astype(np.float32), X_test.astype(np.float32)

with mlflow.start_run() as run:
    model = IrisClassifier(args.hidden)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    features, labels = torch.tensor(X_train.values), torch.tensor(y_train.values)
    for _ in range(args.epochs):
        optimiser.zero_grad()
        loss = nn.functional.cross_entropy(model.logits(features), labels)
        loss.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        predicted = model(torch.tensor(X_test.values)).numpy()
    mlflow.log_params({"hidden": args.hidden, "epochs": args.epochs, "seed": args.seed})
    mlflow.log_metric("accuracy", float((predicted == y_test.values).mean()))
    # TorchScript loads without this file's class; MLflow 3 wants "pickle" named for it.
    log_model(run, mlflow.pytorch, torch.jit.script(model), X_test, pd.Series(predicted), serialization_format="pickle")
