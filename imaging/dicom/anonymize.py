"""De-identification by DICOM PS3.15 Annex E, Basic Application Level Confidentiality Profile.

The profile's attributes and actions (Table E.1-1, the "Basic Prof." column) are kept below as
data, `BASIC_PROFILE`: a keyword and its action per line. The actions:

- D: replace with a non-zero length dummy value consistent with the VR;
- Z: replace with a zero length value (or a dummy value consistent with the VR);
- X: remove;
- K: keep (the basic profile itself keeps nothing listed; the options do);
- C: clean, i.e. replace with values of similar meaning known not to identify anyone;
- U: replace the UID with a non-zero length UID that is internally consistent within a set
  of instances (`UidMap`);
- X/Z, X/D, Z/D, X/Z/D, X/Z/U*: a choice the de-identifier makes from what the IOD requires.
  We do not know each IOD's attribute types here, so we pick what keeps every IOD valid: D
  when it is among the choices, else Z; U* (a sequence) keeps the items, their UIDs replaced.

Private attributes are removed (the profile's default, without the Retain Safe Private
option), and so are curves (50xx,xxxx) and overlay data and comments (60xx,3000/4000), which
the table lists as X. Pixel data are never changed: an image with burned-in annotation
(BurnedInAnnotation "YES") is flagged in the result so the user can be warned.

Knows nothing of HTTP or the database.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID_dictionary

# PS3.15 Table E.1-1, Basic Profile column (attributes of standard composite IODs and the
# retired or misused ones the table also lists). Keyword, then action.
BASIC_PROFILE_TABLE = """
AccessionNumber Z
AcquisitionComments X
AcquisitionContextSequence X/Z
AcquisitionDate X/Z
AcquisitionDateTime X/Z/D
AcquisitionDeviceProcessingDescription X/D
AcquisitionProtocolDescription X
AcquisitionTime X/Z
ActualHumanPerformersSequence X
AdditionalPatientHistory X
AdmissionID X
AdmittingDate X
AdmittingDiagnosesCodeSequence X
AdmittingDiagnosesDescription X
AdmittingTime X
AffectedSOPInstanceUID X
Allergies X
AuthorObserverSequence X
BranchOfService X
CassetteID X
CommentsOnThePerformedProcedureStep X
ConcatenationUID U
ConfidentialityConstraintOnPatientDataDescription X
ContentCreatorName Z
ContentCreatorIdentificationCodeSequence X
ContentDate Z/D
ContentSequence X
ContentTime Z/D
ContextGroupExtensionCreatorUID U
ContrastBolusAgent Z/D
ContributionDescription X
CountryOfResidence X
CreatorVersionUID U
CurrentPatientLocation X
CurveDate X
CurveTime X
CustodialOrganizationSequence X
DataSetTrailingPadding X
DerivationDescription X
DetectorID X/D
DeviceSerialNumber X/Z/D
DeviceUID U
DigitalSignatureUID X
DigitalSignaturesSequence X
DimensionOrganizationUID U
DischargeDiagnosisDescription X
DistributionAddress X
DistributionName X
DoseReferenceUID U
EthnicGroup X
FailedSOPInstanceUIDList U
FiducialUID U
FillerOrderNumberImagingServiceRequest Z
FrameComments X
FrameOfReferenceUID U
GantryID X
GeneratorID X
GraphicAnnotationSequence D
HumanPerformerName X
HumanPerformerOrganization X
IconImageSequence X
IdentifyingComments X
ImageComments X
ImagePresentationComments X
ImagingServiceRequestComments X
Impressions X
InstanceCoercionDateTime X
InstanceCreatorUID U
InstitutionAddress X
InstitutionCodeSequence X/Z/D
InstitutionName X/Z/D
InstitutionalDepartmentName X
InsurancePlanIdentification X
IntendedRecipientsOfResultsIdentificationSequence X
InterpretationApproverSequence X
InterpretationAuthor X
InterpretationDiagnosisDescription X
InterpretationIDIssuer X
InterpretationRecorder X
InterpretationText X
InterpretationTranscriber X
IrradiationEventUID U
IssuerOfAdmissionID X
IssuerOfPatientID X
IssuerOfServiceEpisodeID X
LargePaletteColorLookupTableUID U
LastMenstrualDate X
MAC X
MediaStorageSOPInstanceUID U
MedicalAlerts X
MedicalRecordLocator X
MilitaryRank X
ModifiedAttributesSequence X
ModifiedImageDescription X
ModifyingDeviceID X
ModifyingDeviceManufacturer X
NameOfPhysiciansReadingStudy X
NamesOfIntendedRecipientsOfResults X
Occupation X
OperatorIdentificationSequence X/D
OperatorsName X/Z/D
OrderCallbackPhoneNumber X
OrderEnteredBy X
OrderEntererLocation X
OriginalAttributesSequence X
OtherPatientIDs X
OtherPatientIDsSequence X
OtherPatientNames X
OverlayDate X
OverlayTime X
PaletteColorLookupTableUID U
ParticipantSequence X
PatientAddress X
PatientAge X
PatientBirthDate Z
PatientBirthName X
PatientBirthTime X
PatientComments X
PatientID Z
PatientInstitutionResidence X
PatientInsurancePlanCodeSequence X
PatientMotherBirthName X
PatientName Z
PatientPrimaryLanguageCodeSequence X
PatientPrimaryLanguageModifierCodeSequence X
PatientReligiousPreference X
PatientSex Z
PatientSexNeutered X/Z
PatientSize X
PatientState X
PatientTelephoneNumbers X
PatientTransportArrangements X
PatientWeight X
PerformedLocation X
PerformedProcedureStepDescription X
PerformedProcedureStepEndDate X
PerformedProcedureStepEndTime X
PerformedProcedureStepID X
PerformedProcedureStepStartDate X
PerformedProcedureStepStartTime X
PerformedStationAETitle X
PerformedStationGeographicLocationCodeSequence X
PerformedStationName X
PerformedStationNameCodeSequence X
PerformingPhysicianIdentificationSequence X
PerformingPhysicianName X
PersonAddress X
PersonIdentificationCodeSequence D
PersonName D
PersonTelephoneNumbers X
PhysicianApprovingInterpretation X
PhysiciansOfRecord X
PhysiciansOfRecordIdentificationSequence X
PhysiciansReadingStudyIdentificationSequence X
PlacerOrderNumberImagingServiceRequest Z
PlateID X
PreMedication X
PregnancyStatus X
ProtocolName X/D
ReasonForStudy X
ReasonForTheImagingServiceRequest X
ReferencedDigitalSignatureSequence X
ReferencedFrameOfReferenceUID U
ReferencedGeneralPurposeScheduledProcedureStepTransactionUID U
ReferencedImageSequence X/Z/U*
ReferencedPatientAliasSequence X
ReferencedPatientSequence X
ReferencedPerformedProcedureStepSequence X/Z/D
ReferencedSOPInstanceMACSequence X
ReferencedSOPInstanceUID U
ReferencedSOPInstanceUIDInFile U
ReferencedStudySequence X/Z
ReferringPhysicianAddress X
ReferringPhysicianIdentificationSequence X
ReferringPhysicianName Z
ReferringPhysicianTelephoneNumbers X
RegionOfResidence X
RelatedFrameOfReferenceUID U
RequestAttributesSequence X
RequestedContrastAgent X
RequestedProcedureComments X
RequestedProcedureDescription X/Z
RequestedProcedureID X
RequestedProcedureLocation X
RequestedSOPInstanceUID U
RequestingPhysician X
RequestingService X
ResponsibleOrganization X
ResponsiblePerson X
ResultsComments X
ResultsDistributionListSequence X
ResultsIDIssuer X
ReviewerName X/Z
ScheduledHumanPerformersSequence X
ScheduledPatientInstitutionResidence X
ScheduledPerformingPhysicianIdentificationSequence X
ScheduledPerformingPhysicianName X
ScheduledProcedureStepDescription X
ScheduledProcedureStepEndDate X
ScheduledProcedureStepEndTime X
ScheduledProcedureStepLocation X
ScheduledProcedureStepStartDate X
ScheduledProcedureStepStartTime X
ScheduledStationAETitle X
ScheduledStationGeographicLocationCodeSequence X
ScheduledStationName X
ScheduledStationNameCodeSequence X
ScheduledStudyLocation X
ScheduledStudyLocationAETitle X
SeriesDate X/D
SeriesDescription X
SeriesInstanceUID U
SeriesTime X/D
ServiceEpisodeDescription X
ServiceEpisodeID X
SmokingStatus X
SOPInstanceUID U
SourceImageSequence X/Z/U*
SpecialNeeds X
StationName X/Z/D
StorageMediaFileSetUID U
StudyComments X
StudyDate Z
StudyDescription X
StudyID Z
StudyIDIssuer X
StudyInstanceUID U
StudyTime Z
SynchronizationFrameOfReferenceUID U
TemplateExtensionCreatorUID U
TemplateExtensionOrganizationUID U
TextComments X
TextString X
TimezoneOffsetFromUTC X
TopicAuthor X
TopicKeywords X
TopicSubject X
TopicTitle X
TransactionUID U
UID U
VerifyingObserverIdentificationCodeSequence Z
VerifyingObserverName D
VerifyingObserverSequence D
VerifyingOrganization X
VisitComments X
"""

# Repeating groups the table lists: curve data (50xx,xxxx), overlay data and comments.
REPEATING_GROUP_ACTIONS: tuple[tuple[int, int, int, int, str], ...] = (
    # (group & mask == value) and (element & element_mask == element_value) → action
    (0xFF00, 0x5000, 0x0000, 0x0000, "X"),  # Curve Data: the whole 50xx group
    (0xFF00, 0x6000, 0xFFFF, 0x3000, "X"),  # Overlay Data
    (0xFF00, 0x6000, 0xFFFF, 0x4000, "X"),  # Overlay Comments
)

ACTIONS = {"D", "Z", "X", "K", "C", "U", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"}


def _load_table(text: str) -> dict[BaseTag, str]:
    table: dict[BaseTag, str] = {}
    for line in text.strip().splitlines():
        keyword, action = line.split()
        tag = tag_for_keyword(keyword)
        # A misspelt keyword must fail at import, not silently leave an attribute in place.
        if tag is None or action not in ACTIONS:
            raise ValueError(f"PS3.15 table entry not understood: {line!r}")
        table[Tag(tag)] = action
    return table


BASIC_PROFILE: dict[BaseTag, str] = _load_table(BASIC_PROFILE_TABLE)

# The profile's code (PS3.16 CID 7050) and how the files record it (PS3.3 C.7.1.1).
PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")
DEIDENTIFICATION_METHOD = "DICOM PS3.15 E.1 Basic Application Level Confidentiality Profile"

# What a dummy value (D) looks like, by VR.
DUMMY_TEXT = "ANONYMIZED"
DUMMY_BY_VR: dict[str, object] = {
    "PN": DUMMY_TEXT,
    "LO": DUMMY_TEXT,
    "SH": DUMMY_TEXT,
    "LT": DUMMY_TEXT,
    "ST": DUMMY_TEXT,
    "UT": DUMMY_TEXT,
    "UC": DUMMY_TEXT,
    "CS": "ANON",
    "AE": "ANON",
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
    "AS": "000Y",
    "IS": "0",
    "DS": "0",
    "US": 0,
    "SS": 0,
    "UL": 0,
    "SL": 0,
    "FL": 0.0,
    "FD": 0.0,
}


class UidMap:
    """Original UID → new UID, the same within one export (one salt) so that references
    between instances (series, frame of reference, referenced SOP instances, the file meta)
    stay consistent; deterministic, so a redelivered task makes the same files.

    New UIDs are "2.25." + a 128-bit integer (PS3.5 B.2), taken from an HMAC of the original
    with the export's secret salt: they cannot be traced back without the salt."""

    def __init__(self, salt: bytes) -> None:
        self._salt = salt

    def __call__(self, uid: str) -> str:
        uid = str(uid).strip().rstrip("\x00")
        if not uid:
            return uid
        digest = hmac.new(self._salt, uid.encode("ascii", "replace"), hashlib.sha256).digest()
        return f"2.25.{int.from_bytes(digest[:16], 'big')}"

    def pseudonym(self, value: str, length: int = 12) -> str:
        digest = hmac.new(self._salt, b"pid:" + value.encode(), hashlib.sha256).hexdigest()
        return digest[:length].upper()


@dataclass
class AnonymizationResult:
    dataset: Dataset
    has_burned_in_annotation: bool = False
    removed: list[str] = field(default_factory=list)


def _repeating_group_action(tag: BaseTag) -> str | None:
    for group_mask, group_value, element_mask, element_value, action in REPEATING_GROUP_ACTIONS:
        if tag.group & group_mask == group_value and tag.element & element_mask == element_value:
            return action
    return None


def _resolve(action: str) -> str:
    """One action from a choice the table offers (see the module docstring)."""
    if action == "X/Z/U*":
        return "U*"
    if "/" in action:
        return "D" if "D" in action.split("/") else "Z"
    return action


def _is_instance_uid(element: DataElement) -> bool:
    # A UID the table does not name is still replaced when it identifies an instance, a
    # series or the like; class UIDs, transfer syntaxes and well-known UIDs are kept.
    value = str(element.value or "")
    keyword = element.keyword or ""
    return bool(
        value
        and value not in UID_dictionary
        and "Class" not in keyword
        and "TransferSyntax" not in keyword
        and "CodingScheme" not in keyword
    )


class Anonymizer:
    """Applies the basic profile to datasets; one per export (one `UidMap`)."""

    def __init__(self, *, salt: bytes, pseudonym_number: int) -> None:
        self.uids = UidMap(salt)
        self.pseudonym_number = pseudonym_number

    def anonymize(self, dataset: Dataset) -> AnonymizationResult:
        """De-identify `dataset` in place and return it with what the caller must know."""
        burned_in = str(dataset.get("BurnedInAnnotation", "")).strip().upper() == "YES"
        original_patient_id = str(dataset.get("PatientID", "") or "")
        result = AnonymizationResult(dataset=dataset, has_burned_in_annotation=burned_in)
        self._apply(dataset, result)
        meta = getattr(dataset, "file_meta", None)
        if isinstance(meta, FileMetaDataset):
            if "MediaStorageSOPInstanceUID" in meta:
                meta.MediaStorageSOPInstanceUID = self.uids(meta.MediaStorageSOPInstanceUID)
            meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
            for keyword in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle"):
                if keyword in meta:
                    del meta[keyword]
        self._record_profile(dataset, original_patient_id)
        return result

    def _record_profile(self, dataset: Dataset, original_patient_id: str) -> None:
        # The pseudonym replaces the zeroed name and ID (Z allows a dummy value); the same
        # patient gets the same ID within an export.
        dataset.PatientName = f"ANON^{self.pseudonym_number}"
        dataset.PatientID = f"ANON{self.uids.pseudonym(original_patient_id)}"
        dataset.PatientIdentityRemoved = "YES"
        dataset.DeidentificationMethod = DEIDENTIFICATION_METHOD
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = PROFILE_CODE
        dataset.DeidentificationMethodCodeSequence = Sequence([code])
        # The basic profile removes or replaces every date (PS3.3 C.7.1.1, "REMOVED").
        dataset.LongitudinalTemporalInformationModified = "REMOVED"

    def _apply(self, dataset: Dataset, result: AnonymizationResult) -> None:
        for tag in list(dataset.keys()):
            element = dataset[tag]
            if tag.is_private:
                del dataset[tag]
                result.removed.append(str(tag))
                continue
            action = BASIC_PROFILE.get(tag) or _repeating_group_action(tag)
            if action is None:
                if element.VR == "SQ":
                    for item in element.value or []:
                        self._apply(item, result)
                elif element.VR == "UI" and _is_instance_uid(element):
                    self._replace_uids(element)
                continue
            self._act(dataset, element, _resolve(action), result)

    def _act(
        self, dataset: Dataset, element: DataElement, action: str, result: AnonymizationResult
    ) -> None:
        handlers: dict[str, Callable[[], None]] = {
            "X": lambda: self._remove(dataset, element, result),
            "Z": lambda: self._empty(element),
            "D": lambda: self._dummy(element, result),
            "U": lambda: self._replace_uids(element),
            "U*": lambda: self._dummy(element, result),
            "K": lambda: None,
            # Cleaning free text needs a reader; without one the safe course is to remove.
            "C": lambda: self._remove(dataset, element, result),
        }
        handlers[action]()

    @staticmethod
    def _remove(dataset: Dataset, element: DataElement, result: AnonymizationResult) -> None:
        del dataset[element.tag]
        result.removed.append(element.keyword or str(element.tag))

    @staticmethod
    def _empty(element: DataElement) -> None:
        element.value = Sequence() if element.VR == "SQ" else element.empty_value

    def _dummy(self, element: DataElement, result: AnonymizationResult) -> None:
        if element.VR == "SQ":
            # A dummy sequence: the items kept, each de-identified by the same table.
            for item in element.value or []:
                self._apply(item, result)
        elif element.VR == "UI":
            self._replace_uids(element)
        else:
            vr = element.VR if element.VR in DUMMY_BY_VR else _dictionary_vr(element)
            element.value = DUMMY_BY_VR.get(vr, b"" if vr in ("OB", "OW", "UN") else None)

    def _replace_uids(self, element: DataElement) -> None:
        if element.value in (None, ""):
            return
        if element.VM > 1:
            element.value = [self.uids(uid) for uid in element.value]
        else:
            element.value = self.uids(element.value)


def _dictionary_vr(element: DataElement) -> str:
    try:
        return dictionary_VR(element.tag).split(" ")[0]
    except KeyError:
        return element.VR
