from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.models import Group
from django.contrib.auth.views import redirect_to_login
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from rest_framework.authtoken.admin import TokenProxy

from accounts import access
from accounts.models import AuditEvent, Membership, Organization, Specialty, User


def _login_through_the_site(request: HttpRequest, extra_context: Any = None) -> HttpResponse:
    # The admin's own log-in form would skip two-factor and the audit of the site's log-in.
    return redirect_to_login(request.get_full_path(), reverse("accounts:login"))


admin.site.login = _login_through_the_site  # type: ignore[method-assign]
# API tokens are passwords: nobody reads them in the admin (`manage.py api_token` issues them).
admin.site.unregister(TokenProxy)
# Roles come from memberships; Django's groups are not used.
admin.site.unregister(Group)


class PolicyAdminMixin:
    """The admin asks the site's access policies (accounts/access.py), like every other edge.

    Superusers, the operators who install the platform, keep Django's full admin; clinical
    models are not registered here at all.
    """

    model: Any

    def _allowed(self, request: HttpRequest, action: str, obj: Any = None) -> bool:
        if request.user.is_superuser:
            return True
        if obj is None:
            return access.rows_allowed(request.user, action, self.model) != access.NOTHING
        return access.can(request.user, action, obj)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)  # type: ignore[misc]
        if request.user.is_superuser:
            return queryset
        return access.scope(request.user, access.VIEW, queryset)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._allowed(request, access.VIEW)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allowed(request, access.VIEW, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allowed(request, access.CHANGE, obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allowed(request, access.CREATE)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allowed(request, access.DELETE, obj)


class MembershipInline(PolicyAdminMixin, admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["organization"]
    filter_horizontal = ["specialties"]


@admin.register(User)
class UserAdmin(PolicyAdminMixin, DjangoUserAdmin):
    ordering = ["email"]
    list_display = ["email", "full_name", "is_active", "is_staff", "date_joined"]
    search_fields = ["email", "full_name"]
    list_filter = ["is_active", "is_staff", "memberships__role"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        (_("Personal info"), {"fields": ("full_name", "phone", "language", "time_zone")}),
        (_("Permissions"), {"fields": ("is_active", "is_staff", "is_superuser")}),
        (_("Important dates"), {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("email", "full_name", "password1", "password2")}),
    )
    inlines = [MembershipInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # Only an operator makes operators: nobody else raises anyone's (or their own) flags.
        if request.user.is_superuser:
            return ()
        return ("is_staff", "is_superuser", "last_login", "date_joined")


@admin.register(Organization)
class OrganizationAdmin(PolicyAdminMixin, admin.ModelAdmin):
    list_display = ["name", "kind", "region", "is_active"]
    list_filter = ["kind", "region", "is_active"]
    search_fields = ["name"]


@admin.register(Specialty)
class SpecialtyAdmin(admin.ModelAdmin):
    list_display = ["code", "name_en", "name_ru", "name_ky"]
    search_fields = ["code", "name_en", "name_ru", "name_ky"]


@admin.register(AuditEvent)
class AuditEventAdmin(PolicyAdminMixin, admin.ModelAdmin):
    """Read-only: the audit log is append-only."""

    list_display = ["at", "actor_label", "action", "outcome", "object_label", "ip_address"]
    list_filter = ["action", "outcome", "region", "channel"]
    search_fields = ["actor_label", "object_label"]
    date_hierarchy = "at"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
