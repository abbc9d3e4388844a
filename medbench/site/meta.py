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


# The project's public repository: the one place the site's repository, pull-request and citation
# links come from (change it here, or set MEDBENCH_REPOSITORY_URL when building a fork's site).
REPOSITORY_URL = "https://github.com/medbench/medbench"


def repository_url() -> str:
    import os

    return (os.environ.get("MEDBENCH_REPOSITORY_URL") or REPOSITORY_URL).rstrip("/")


def data_date(dates) -> str | None:
    """The date a page's data is from: SOURCE_DATE_EPOCH when set (reproducible builds), otherwise the latest
    of ``dates`` (evaluation records' start dates), so that unchanged inputs always build the same bytes;
    None when there is no date."""
    import os
    from datetime import datetime, timezone

    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        return datetime.fromtimestamp(int(epoch), timezone.utc).strftime("%Y-%m-%d")
    dates = [d for d in dates if d]
    return max(dates) if dates else None


def citation(version: str, year: str) -> str:
    """BibTeX for the benchmark (the software and its leaderboard)."""
    return ("@misc{medbench,\n"
            "  title        = {medbench: a robustness benchmark for MedMNIST classifiers},\n"
            "  author       = {{medbench contributors}},\n"
            f"  year         = {{{year}}},\n"
            f"  howpublished = {{\\url{{{repository_url()}}}}},\n"
            f"  note         = {{medbench {version}; leaderboard results as of {year}}}\n"
            "}")
