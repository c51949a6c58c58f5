"""The specialties a consult can ask for, named in English, Russian and Kyrgyz."""

from django.db import migrations

from accounts.specialties import SPECIALTIES  # a stable catalogue

def add_specialties(apps, schema_editor):
    Specialty = apps.get_model("accounts", "Specialty")
    for code, name_en, name_ru, name_ky in SPECIALTIES:
        Specialty.objects.update_or_create(
            code=code, defaults={"name_en": name_en, "name_ru": name_ru, "name_ky": name_ky}
        )

class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_audit_append_only")]

    operations = [migrations.RunPython(add_specialties, migrations.RunPython.noop)]
