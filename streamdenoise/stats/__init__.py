"""Pure statistics on micrographs: filters, the reference picker, quality and readiness."""
