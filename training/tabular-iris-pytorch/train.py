"""Iris, a small PyTorch MLP (CPU), logged as TorchScript so serving needs no class code."""
import argparse

import mlflow
import numpy as np
import pandas as pd
import torch
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split
from torch import nn

from home_mlops.training import ensure_experiment, report, set_mlflow_backend_store_uri

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
set_mlflow_backend_store_uri()
ensure_experiment(APP)
X, y = load_iris(return_X_y=True, as_frame=True)
X = X.astype(np.float32)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=args.seed)

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
    info = mlflow.pytorch.log_model(
        torch.jit.script(model),
        name="model",
        input_example=X_test.head(3),
        signature=mlflow.models.infer_signature(X_test, pd.Series(predicted)),
    )
    report(run, info)
