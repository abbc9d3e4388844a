"""What the site says besides the numbers: task labels, the repository and the data's date."""

TASK_LABEL = {"multi-class": "multi-class", "binary-class": "binary", "multi-label, binary-class": "multi-label",
              "ordinal-regression": "ordinal"}


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
