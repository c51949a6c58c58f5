"""The specialties a consult can ask for, named in English, Russian and Kyrgyz."""

from __future__ import annotations

# (code, English, Russian, Kyrgyz)
SPECIALTIES = [
    ("cardiology", "Cardiology", "Кардиология", "Кардиология"),
    ("neurology", "Neurology", "Неврология", "Неврология"),
    ("radiology", "Radiology", "Лучевая диагностика", "Нур диагностикасы"),
    (
        "ultrasound",
        "Ultrasound diagnostics",
        "Ультразвуковая диагностика",
        "Ультра үн диагностикасы",
    ),
    ("pediatrics", "Pediatrics", "Педиатрия", "Педиатрия"),
    (
        "obstetrics-gynecology",
        "Obstetrics and gynecology",
        "Акушерство и гинекология",
        "Акушерчилик жана гинекология",
    ),
    ("surgery", "Surgery", "Хирургия", "Хирургия"),
    (
        "traumatology",
        "Traumatology and orthopedics",
        "Травматология и ортопедия",
        "Травматология жана ортопедия",
    ),
    ("endocrinology", "Endocrinology", "Эндокринология", "Эндокринология"),
    ("pulmonology", "Pulmonology", "Пульмонология", "Пульмонология"),
    ("gastroenterology", "Gastroenterology", "Гастроэнтерология", "Гастроэнтерология"),
    ("infectious-diseases", "Infectious diseases", "Инфекционные болезни", "Жугуштуу оорулар"),
    ("dermatology", "Dermatology", "Дерматология", "Дерматология"),
    ("ophthalmology", "Ophthalmology", "Офтальмология", "Офтальмология"),
    ("oncology", "Oncology", "Онкология", "Онкология"),
    ("psychiatry", "Psychiatry", "Психиатрия", "Психиатрия"),
    ("nephrology", "Nephrology", "Нефрология", "Нефрология"),
    ("tuberculosis", "Phthisiology (tuberculosis)", "Фтизиатрия", "Фтизиатрия"),
]


def ensure_specialties() -> None:
    """Create the catalogue's specialties that are missing (idempotent)."""
    from accounts.models import Specialty

    for code, name_en, name_ru, name_ky in SPECIALTIES:
        Specialty.objects.get_or_create(
            code=code, defaults={"name_en": name_en, "name_ru": name_ru, "name_ky": name_ky}
        )
