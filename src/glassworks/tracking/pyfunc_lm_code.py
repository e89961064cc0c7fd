"""The lm task's pyfunc as MLflow "models from code": this file is logged in place of a pickle.

``mlflow.pyfunc.save_model(python_model=<this file>)`` copies it into the model; loading runs it,
which builds :class:`CausalLMPyfunc` from the installed ``glassworks`` package (as
:mod:`glassworks.tracking.pyfunc_code` does for the classifier). Nothing is cloudpickled.
"""

import mlflow

from glassworks.tracking.pyfunc_lm import CausalLMPyfunc

mlflow.models.set_model(CausalLMPyfunc())
