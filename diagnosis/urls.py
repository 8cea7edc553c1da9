from __future__ import annotations

from django.urls import path

from diagnosis import audit_views, views

# Only ids of cases, images and analyses appear in URLs; never a hospital identifier.
urlpatterns = [
    path("", views.index, name="index"),
    path("healthz", views.healthz, name="healthz"),
    path("cases/", views.case_list, name="case-list"),
    path("cases/new", views.case_create, name="case-create"),
    path("cases/<int:pk>/", views.case_detail, name="case-detail"),
    path("cases/<int:pk>/images", views.image_upload, name="image-upload"),
    path("cases/<int:pk>/reviews", views.review_submit, name="review-submit"),
    path("cases/<int:pk>/lab-results", views.lab_result_submit, name="lab-result-submit"),
    path("cases/<int:pk>/release", views.case_release, name="case-release"),
    path("review/", views.review_queue, name="review-queue"),
    path("images/<int:pk>/reveal", views.image_reveal, name="image-reveal"),
    path("images/<int:pk>/status", views.image_status, name="image-status"),
    path("images/<int:pk>/photo", views.image_photo, name="image-photo"),
    path("analyses/<int:pk>/overlay.png", views.analysis_overlay, name="analysis-overlay"),
    path("analyses/<int:pk>/heatmap.png", views.analysis_heatmap, name="analysis-heatmap"),
    path("audit/", audit_views.audit_list, name="audit-list"),
    path("audit/filter", audit_views.audit_filter, name="audit-filter"),
    path("audit/export.csv", audit_views.audit_export, name="audit-export"),
    path("audit/patients/", audit_views.audit_patient_find, name="audit-patient-find"),
    path("audit/patients/find", audit_views.audit_patient_find_submit, name="audit-patient-find-submit"),
    path("audit/patients/<int:pk>/", audit_views.audit_patient, name="audit-patient"),
    path("audit/users/", audit_views.audit_users, name="audit-users"),
    path("audit/users/<int:pk>/", audit_views.audit_user, name="audit-user"),
]
