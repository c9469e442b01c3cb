"""Iris, scikit-learn LogisticRegression (the seed's first app)."""
import argparse

import mlflow
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score

from home_mlops.training import log_model, prepare

APP = "tabular-iris-multi-classifier"

parser = argparse.ArgumentParser()
parser.add_argument("--C", type=float, default=1.0, help="inverse regularisation strength")
parser.add_argument("--seed", type=int, default=42)
args = parser.parse_args()

X_train, X_test, y_train, y_test = prepare(APP, "iris", args.seed)
with mlflow.start_run() as run:
    model = LogisticRegression(C=args.C, max_iter=500).fit(X_train, y_train)
    mlflow.log_params({"C": args.C, "seed": args.seed})
    mlflow.log_metric("accuracy", accuracy_score(y_test, model.predict(X_test)))
    log_model(run, mlflow.sklearn, model, X_test, model.predict(X_test))
