"""HTTP infrastructure shared by every client of a model server (the policy engine, the PRM
client, the proxy): replica pools with retries (``pool``) and server discovery (``discovery``)."""
