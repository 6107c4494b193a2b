"""The monthly report to the provincial authority: figures from Prometheus and our own records,
immutable signed revisions, Chinese HTML/PDF and an .xlsx workbook, sealed delivery with receipts."""
