"""Iris, LightGBM classifier."""
import argparse

import lightgbm as lgb
import mlflow
from sklearn.datasets import load_iris
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

from home_mlops.training import ensure_experiment, report, set_mlflow_backend_store_uri

APP = "tabular-iris-lightgbm"

parser = argparse.ArgumentParser()
parser.add_argument("--n-estimators", type=int, default=30)
parser.add_argument("--seed", type=int, default=42)
args = parser.parse_args()

set_mlflow_backend_store_uri()
ensure_experiment(APP)
X, y = load_iris(return_X_y=True, as_frame=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=args.seed)

with mlflow.start_run() as run:
    model = lgb.LGBMClassifier(n_estimators=args.n_estimators, random_state=args.seed, verbose=-1)
    model.fit(X_train, y_train)
    mlflow.log_params({"n_estimators": args.n_estimators, "seed": args.seed})
    mlflow.log_metric("accuracy", accuracy_score(y_test, model.predict(X_test)))
    info = mlflow.lightgbm.log_model(
        model,
        name="model",
        input_example=X_test.head(3),
        signature=mlflow.models.infer_signature(X_test, model.predict(X_test)),
    )
    report(run, info)
