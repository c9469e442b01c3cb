"""Diabetes progression, scikit-learn random forest (cloudpickle: skops refuses tree models)."""
import argparse

import mlflow
from sklearn.datasets import load_diabetes
from sklearn.ensemble import RandomForestRegressor
from sklearn.metrics import mean_squared_error
from sklearn.model_selection import train_test_split

from home_mlops.training import ensure_experiment, report, set_mlflow_backend_store_uri

APP = "tabular-diabetes-regressor"

parser = argparse.ArgumentParser()
parser.add_argument("--n-estimators", type=int, default=30)
parser.add_argument("--seed", type=int, default=42)
args = parser.parse_args()

set_mlflow_backend_store_uri()
ensure_experiment(APP)
X, y = load_diabetes(return_X_y=True, as_frame=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=args.seed)

with mlflow.start_run() as run:
    model = RandomForestRegressor(n_estimators=args.n_estimators, max_depth=6, random_state=args.seed)
    model.fit(X_train, y_train)
    mlflow.log_params({"n_estimators": args.n_estimators, "seed": args.seed})
    mlflow.log_metric("rmse", mean_squared_error(y_test, model.predict(X_test)) ** 0.5)
    info = mlflow.sklearn.log_model(
        model,
        name="model",
        serialization_format="cloudpickle",
        input_example=X_test.head(3),
        signature=mlflow.models.infer_signature(X_test, model.predict(X_test)),
    )
    report(run, info)
