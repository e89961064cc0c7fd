"""The run's pyfunc model as MLflow "models from code": this file is logged in place of a pickle.

``mlflow.pyfunc.save_model(python_model=<this file>)`` copies it into the model; loading runs it,
which builds the model class from the installed ``glassworks`` package. Nothing is
cloudpickled (MLflow warns about pickled Python objects, and the README's security section
promises that nothing from the store is unpickled).
"""

import mlflow

from glassworks.tracking.pyfunc import TextClassifierPyfunc

mlflow.models.set_model(TextClassifierPyfunc())
