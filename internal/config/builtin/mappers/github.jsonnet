// Built-in claims mapper of kratos-injector for GitHub. Kratos reads the primary email and
// whether GitHub verified it (scope user:email, the default scope we render for GitHub). The
// email becomes a trait only when verified; the name falls back to the GitHub login.
local claims = { email_verified: false } + std.extVar('claims');
local verified = 'email' in claims && claims.email_verified;
local name =
  if 'name' in claims then claims.name
  else if 'nickname' in claims then claims.nickname
  else null;

{
  identity: {
    traits: {
      [if verified then 'email']: claims.email,
      [if name != null then 'name']: name,
    },
    [if verified then 'verified_addresses']: [{ via: 'email', value: claims.email }],
  },
}
