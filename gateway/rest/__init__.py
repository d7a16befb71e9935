"""REST dialects of the client port: X-Road r1 and Trembita/UXP. Pure, no I/O."""
