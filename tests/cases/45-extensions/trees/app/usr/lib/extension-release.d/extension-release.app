ID=portabletest
VERSION_ID=1
SYSEXT_SCOPE=portable
