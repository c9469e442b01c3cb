"""Iris, XGBoost classifier."""
import argparse

import mlflow
import xgboost as xgb
from sklearn.metrics import accuracy_score

from home_mlops.training import log_model, prepare

APP = "tabular-iris-xgboost"

parser = argparse.ArgumentParser()
parser.add_argument("--n-estimators", type=int, default=30)
parser.add_argument("--seed", type=int, default=42)
args = parser.parse_args()

X_train, X_test, y_train, y_test = prepare(APP, "iris", args.seed)
with mlflow.start_run() as run:
    model = xgb.XGBClassifier(n_estimators=args.n_estimators, max_depth=3, random_state=args.seed)
    model.fit(X_train, y_train)
    mlflow.log_params({"n_estimators": args.n_estimators, "seed": args.seed})
    mlflow.log_metric("accuracy", accuracy_score(y_test, model.predict(X_test)))
    log_model(run, mlflow.xgboost, model, X_test, model.predict(X_test))
