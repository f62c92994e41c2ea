"""Hyper-V over WinRM (pywinrm): PowerShell Hyper-V cmdlets printing UTF-8 JSON."""
