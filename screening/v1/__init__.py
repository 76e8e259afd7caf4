"""Generated from proto/ by python -m screening.protogen; do not edit."""
