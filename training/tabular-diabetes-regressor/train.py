"""Diabetes progression, scikit-learn random forest (cloudpickle: skops refuses tree models)."""
import argparse

import mlflow
from sklearn.ensemble import RandomForestRegressor
from sklearn.metrics import mean_squared_error

from home_mlops.training import log_model, prepare

APP = "tabular-diabetes-regressor"

parser = argparse.ArgumentParser()
parser.add_argument("--n-estimators", type=int, default=30)
parser.add_argument("--seed", type=int, default=42)
args = parser.parse_args()

X_train, X_test, y_train, y_test = prepare(APP, "diabetes", args.seed)
with mlflow.start_run() as run:
    model = RandomForestRegressor(n_estimators=args.n_estimators, max_depth=6, random_state=args.seed)
    model.fit(X_train, y_train)
    mlflow.log_params({"n_estimators": args.n_estimators, "seed": args.seed})
    mlflow.log_metric("rmse", mean_squared_error(y_test, model.predict(X_test)) ** 0.5)
    log_model(run, mlflow.sklearn, model, X_test, model.predict(X_test), serialization_format="cloudpickle")
