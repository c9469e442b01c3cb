"""Iris, LightGBM classifier."""
import argparse

import lightgbm as lgb
import mlflow
from sklearn.metrics import accuracy_score

from home_mlops.training import log_model, prepare

APP = "tabular-iris-lightgbm"

parser = argparse.ArgumentParser()
parser.add_argument("--n-estimators", type=int, default=30)
parser.add_argument("--seed", type=int, default=42)
args = parser.parse_args()

X_train, X_test, y_train, y_test = prepare(APP, "iris", args.seed)
with mlflow.start_run() as run:
    model = lgb.LGBMClassifier(n_estimators=args.n_estimators, random_state=args.seed, verbose=-1)
    model.fit(X_train, y_train)
    mlflow.log_params({"n_estimators": args.n_estimators, "seed": args.seed})
    mlflow.log_metric("accuracy", accuracy_score(y_test, model.predict(X_test)))
    log_model(run, mlflow.lightgbm, model, X_test, model.predict(X_test))
