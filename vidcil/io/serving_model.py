"""The served model's code, logged with every model version ("models from code"): MLflow runs this
file to build the model, so no pickled Python object is stored or loaded. The weights are the
version's ``checkpoint`` artifact (``state_dict.pt`` read with ``weights_only=True`` + ``config.json``).
"""

import mlflow

from vidcil.io.mlflow_registry import VideoClassifier

mlflow.models.set_model(VideoClassifier())
