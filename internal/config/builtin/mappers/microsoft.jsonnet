// Built-in claims mapper of kratos-injector for Microsoft Entra ID. Entra sends no
// email_verified claim, so the email is taken as the identity's address but never marked
// verified: the verification flow (when enabled) still proves it.
local claims = std.extVar('claims');

{
  identity: {
    traits: {
      [if 'email' in claims then 'email']: claims.email,
      [if 'name' in claims then 'name']: claims.name,
    },
  },
}
