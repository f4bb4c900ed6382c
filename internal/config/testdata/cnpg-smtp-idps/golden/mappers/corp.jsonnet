local claims = std.extVar('claims');

{
  identity: {
    traits: {
      email: claims.email,
      [if 'name' in claims then 'name']: claims.name,
    },
    verified_addresses: [{ via: 'email', value: claims.email }],
  },
}
