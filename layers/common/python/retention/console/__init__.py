"""The marketer's web console (GET /console/…): server-rendered pages over the admin API's domain functions,
sign-in with a person's token exchanged for a server-side session, CSRF on every form, the same roles and
audit log as the admin API. Served by the admin_api function (same permissions, no second broad role)."""
