"""De-identification (PS3.15 Annex E, basic profile): what leaves the care team identifies
nobody, stays a valid DICOM study whose references still hold, and keeps its pixels."""

from __future__ import annotations

import copy

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from imaging.dicom.anonymize import BASIC_PROFILE, Anonymizer
from imaging.dicom.parse import parse_instance
from tests.factories.imaging import ct_series, dicom_bytes


def _anonymizer(salt: bytes = b"salt", number: int = 7) -> Anonymizer:
    return Anonymizer(salt=salt, pseudonym_number=number)


def _identifying_study() -> list[Dataset]:
    slices = ct_series(
        3,
        patient_id="21503198500123",
        patient_name="Mamytova^Asel",
        birth_date="19850315",
        InstitutionName="At-Bashy FMC",
        ReferringPhysicianName="Bakyt^Clinician",
        OperatorsName="Nurse^Aida",
        OtherPatientIDs="KG-778",
        PatientAddress="Naryn, Lenina 5",
        FrameOfReferenceUID="1.2.826.0.1.3680043.8.498.111",
    )
    for ds in slices:
        ds.add_new(0x00091010, "LO", "Private vendor: Mamytova")
        ds.add_new(0x60003000, "OW", b"\x00\x01" * 8)
    # Slice 2 references slice 1 (as a localizer or a derived image would).
    reference = Dataset()
    reference.ReferencedSOPClassUID = slices[0].SOPClassUID
    reference.ReferencedSOPInstanceUID = slices[0].SOPInstanceUID
    slices[1].ReferencedImageSequence = Sequence([reference])
    return slices


def test_names_ids_birth_date_and_addresses_are_gone() -> None:
    ds = _identifying_study()[0]

    _anonymizer().anonymize(ds)

    text = dicom_bytes(ds)
    for secret in (b"Mamytova", b"21503198500123", b"19850315", b"At-Bashy", b"Bakyt", b"Aida"):
        assert secret not in text
    assert str(ds.PatientName) == "ANON^7"
    assert ds.PatientID.startswith("ANON")
    assert ds.PatientBirthDate == ""
    assert "OtherPatientIDs" not in ds
    assert "PatientAddress" not in ds
    assert ds.StudyDate == ""
    assert ds.AccessionNumber == ""


def test_private_tags_and_overlay_data_are_removed() -> None:
    ds = _identifying_study()[0]

    _anonymizer().anonymize(ds)

    assert not any(element.tag.is_private for element in ds)
    assert 0x60003000 not in ds


def test_uids_are_replaced_consistently_across_the_study_and_its_references() -> None:
    slices = _identifying_study()
    originals = [ds.SOPInstanceUID for ds in slices]
    anonymizer = _anonymizer()

    for ds in slices:
        anonymizer.anonymize(ds)

    assert {ds.StudyInstanceUID for ds in slices} == {slices[0].StudyInstanceUID}
    assert len({ds.SeriesInstanceUID for ds in slices}) == 1
    assert slices[0].StudyInstanceUID != _identifying_study()[0].StudyInstanceUID
    assert not {ds.SOPInstanceUID for ds in slices} & set(originals)
    assert len({ds.FrameOfReferenceUID for ds in slices}) == 1
    assert slices[0].FrameOfReferenceUID != "1.2.826.0.1.3680043.8.498.111"
    referenced = slices[1].ReferencedImageSequence[0]
    assert referenced.ReferencedSOPInstanceUID == slices[0].SOPInstanceUID
    assert referenced.ReferencedSOPClassUID == slices[0].SOPClassUID  # a class is not an id
    for ds in slices:
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.StudyInstanceUID.startswith("2.25.")


def test_another_export_maps_the_same_uids_differently() -> None:
    first = _identifying_study()[0]
    second = copy.deepcopy(first)

    _anonymizer(salt=b"one").anonymize(first)
    _anonymizer(salt=b"two").anonymize(second)

    assert first.StudyInstanceUID != second.StudyInstanceUID


def test_the_profile_used_is_recorded_in_the_file() -> None:
    ds = _identifying_study()[0]

    _anonymizer().anonymize(ds)

    assert ds.PatientIdentityRemoved == "YES"
    assert "Basic Application Level Confidentiality Profile" in ds.DeidentificationMethod
    code = ds.DeidentificationMethodCodeSequence[0]
    assert (code.CodeValue, code.CodingSchemeDesignator) == ("113100", "DCM")
    assert code.CodeMeaning == "Basic Application Confidentiality Profile"
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"


def test_result_is_valid_dicom_with_pixels_unchanged() -> None:
    ds = _identifying_study()[0]
    pixels = ds.PixelData

    _anonymizer().anonymize(ds)
    parsed = parse_instance(dicom_bytes(ds))

    assert parsed.dataset.PixelData == pixels
    assert parsed.study["study_instance_uid"] == ds.StudyInstanceUID
    assert parsed.study["dicom_patient_name"] == "ANON^7"


def test_burned_in_annotation_is_flagged() -> None:
    ds = _identifying_study()[0]
    ds.BurnedInAnnotation = "YES"
    clean = _identifying_study()[0]

    assert _anonymizer().anonymize(ds).has_burned_in_annotation
    assert not _anonymizer().anonymize(clean).has_burned_in_annotation


def test_identifiers_nested_in_sequences_are_handled() -> None:
    ds = _identifying_study()[0]
    request = Dataset()
    request.RequestedProcedureID = "RP-9"
    request.ScheduledProcedureStepID = "S1"
    ds.RequestAttributesSequence = Sequence([request])
    item = Dataset()
    item.PatientName = "Hidden^Name"
    item.SOPInstanceUID = "1.2.3.4.5"
    ds.add_new(0x00081250, "SQ", Sequence([item]))  # Related Series Sequence (not listed)

    _anonymizer().anonymize(ds)

    assert "RequestAttributesSequence" not in ds
    nested = ds[0x00081250].value[0]
    assert nested.PatientName == ""
    assert nested.SOPInstanceUID != "1.2.3.4.5"


def test_the_table_is_data_covering_the_profile() -> None:
    # A few rows of Table E.1-1 that matter most, as the standard gives them.
    from pydicom.datadict import tag_for_keyword

    def action(keyword: str) -> str:
        return BASIC_PROFILE[tag_for_keyword(keyword)]

    assert action("PatientName") == "Z"
    assert action("PatientBirthDate") == "Z"
    assert action("OtherPatientIDs") == "X"
    assert action("StudyInstanceUID") == "U"
    assert action("InstitutionName") == "X/Z/D"
    assert action("ReferencedImageSequence") == "X/Z/U*"
