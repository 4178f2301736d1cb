"""The logged MLflow model of a compiled program (MLflow's models-from-code: this file, no pickle).

`valuesim compile` logs this file as a pyfunc model with the saved program folder as its artifact `program`
(valuesim/tracking.py, log_program_model). MLflow runs the file when the model is loaded
(`mlflow.pyfunc.load_model`, `mlflow models serve`): the program is rebuilt from its JSON state and answers rows of
{demographics, profile, question, options}. ValueSim must be installed where the model is loaded.
"""

from valuesim import tracking
from valuesim.programs.saved import ServedProgram

tracking.set_served_model(ServedProgram)
