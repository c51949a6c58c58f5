"""The DICOM JSON (PS3.18 F.2) that QIDO-RS answers with, built from the index, and the
bulk data URIs that WADO-RS metadata points to."""

from __future__ import annotations

from typing import Any

from imaging.models import Instance, Series, Study

Element = dict[str, Any]
UTF8 = "ISO_IR 192"


def element(vr: str, value: Any) -> Element:
    """One attribute; an empty value is sent without "Value" (PS3.18 F.2.5)."""
    if value is None or value == "" or value == []:
        return {"vr": vr}
    values = value if isinstance(value, list) else [value]
    if vr == "PN":
        values = [{"Alphabetic": str(name)} for name in values]
    return {"vr": vr, "Value": values}


def study_url(base_url: str, study_uid: str) -> str:
    return f"{base_url}/studies/{study_uid}"


def series_url(base_url: str, study_uid: str, series_uid: str) -> str:
    return f"{study_url(base_url, study_uid)}/series/{series_uid}"


def instance_url(base_url: str, study_uid: str, series_uid: str, sop_uid: str) -> str:
    return f"{series_url(base_url, study_uid, series_uid)}/instances/{sop_uid}"


def study_attributes(study: Study, base_url: str) -> dict[str, Element]:
    """PS3.18 Table 10.6.3-3, from the index."""
    return {
        "00080005": element("CS", UTF8),
        "00080020": element("DA", study.study_date),
        "00080030": element("TM", study.study_time),
        "00080050": element("SH", study.accession_number),
        "00080056": element("CS", "ONLINE"),
        "00080061": element("CS", study.modality_list),
        "00080090": element("PN", study.referring_physician),
        "00081030": element("LO", study.description),
        "00081190": element("UR", study_url(base_url, study.study_instance_uid)),
        "00100010": element("PN", study.dicom_patient_name),
        "00100020": element("LO", study.dicom_patient_id),
        "00100030": element("DA", study.dicom_birth_date),
        "00100040": element("CS", study.dicom_sex),
        "0020000D": element("UI", study.study_instance_uid),
        "00200010": element("SH", study.study_id),
        "00201206": element("IS", study.number_of_series),
        "00201208": element("IS", study.number_of_instances),
    }


def series_attributes(series: Series, study_uid: str, base_url: str) -> dict[str, Element]:
    """PS3.18 Table 10.6.3-4, from the index."""
    return {
        "00080005": element("CS", UTF8),
        "00080021": element("DA", series.series_date),
        "00080056": element("CS", "ONLINE"),
        "00080060": element("CS", series.modality),
        "0008103E": element("LO", series.description),
        "00081190": element("UR", series_url(base_url, study_uid, series.series_instance_uid)),
        "00180015": element("CS", series.body_part),
        "0020000D": element("UI", study_uid),
        "0020000E": element("UI", series.series_instance_uid),
        "00200011": element("IS", series.series_number),
        "00201209": element("IS", series.number_of_instances),
    }


def instance_attributes(
    instance: Instance, study_uid: str, series_uid: str, base_url: str
) -> dict[str, Element]:
    """PS3.18 Table 10.6.3-5, from the index."""
    return {
        "00080005": element("CS", UTF8),
        "00080016": element("UI", instance.sop_class_uid),
        "00080018": element("UI", instance.sop_instance_uid),
        "00080056": element("CS", "ONLINE"),
        "00081190": element(
            "UR", instance_url(base_url, study_uid, series_uid, instance.sop_instance_uid)
        ),
        "0020000D": element("UI", study_uid),
        "0020000E": element("UI", series_uid),
        "00200013": element("IS", instance.instance_number),
        "00280008": element("IS", instance.number_of_frames if instance.has_pixels else None),
        "00280010": element("US", instance.rows),
        "00280011": element("US", instance.columns),
    }


def without_bulk_data(metadata: dict[str, Element]) -> dict[str, Element]:
    """Stored metadata without its bulk data elements (QIDO answers carry no bulk data)."""
    return {tag: value for tag, value in metadata.items() if "BulkDataURI" not in value}


def fill_bulk_data_uris(
    metadata: dict[str, Element], instance_base: str, number_of_frames: int
) -> dict[str, Element]:
    """The stored metadata with its empty BulkDataURIs pointing where WADO-RS serves the bytes:
    pixel data at the frames, other top-level bulk data at .../bulkdata/{tag}, bulk data
    nested in sequences at the instance itself. Changes `metadata` in place."""
    for tag, value in metadata.items():
        if "BulkDataURI" in value:
            if tag == "7FE00010":
                frames = ",".join(str(n) for n in range(1, max(number_of_frames, 1) + 1))
                value["BulkDataURI"] = f"{instance_base}/frames/{frames}"
            else:
                value["BulkDataURI"] = f"{instance_base}/bulkdata/{tag}"
        elif value.get("vr") == "SQ":
            for item in value.get("Value", []):
                _fill_nested(item, instance_base)
    return metadata


def _fill_nested(item: dict[str, Element], instance_base: str) -> None:
    for value in item.values():
        if "BulkDataURI" in value:
            value["BulkDataURI"] = instance_base
        elif value.get("vr") == "SQ":
            for nested in value.get("Value", []):
                _fill_nested(nested, instance_base)
