// Built-in claims mapper of kratos-injector for OpenID Connect providers that report
// email_verified (generic OIDC, Google, GitLab, Apple, ...). It fills the traits of the built-in
// `default` identity schema: the email only when the provider verified it (an unverified address
// must not become a login identifier), then also as a verified address, and the name if known.
local claims = { email_verified: false } + std.extVar('claims');
local verified = 'email' in claims && claims.email_verified;

{
  identity: {
    traits: {
      [if verified then 'email']: claims.email,
      [if 'name' in claims then 'name']: claims.name,
    },
    [if verified then 'verified_addresses']: [{ via: 'email', value: claims.email }],
  },
}
