"""Descriptive labels of the MedMNIST datasets that ``medmnist.INFO`` does not hold as fields.

Modalities as listed in the MedMNIST v2 paper (Yang et al., Scientific Data 2023, Table 1).
"""

MODALITY = {
    "pathmnist": "Colon pathology",
    "chestmnist": "Chest X-ray",
    "dermamnist": "Dermatoscope",
    "octmnist": "Retinal OCT",
    "pneumoniamnist": "Chest X-ray",
    "retinamnist": "Fundus camera",
    "breastmnist": "Breast ultrasound",
    "bloodmnist": "Blood cell microscope",
    "tissuemnist": "Kidney cortex microscope",
    "organamnist": "Abdominal CT",
    "organcmnist": "Abdominal CT",
    "organsmnist": "Abdominal CT",
    "organmnist3d": "Abdominal CT",
    "nodulemnist3d": "Chest CT",
    "adrenalmnist3d": "Shape from abdominal CT",
    "fracturemnist3d": "Chest CT",
    "vesselmnist3d": "Shape from brain MRA",
    "synapsemnist3d": "Electron microscope",
}

TASK_LABEL = {
    "multi-class": "multi-class",
    "binary-class": "binary",
    "multi-label, binary-class": "multi-label",
    "ordinal-regression": "ordinal",
}


def modality(name: str) -> str:
    return MODALITY.get(name, "")
