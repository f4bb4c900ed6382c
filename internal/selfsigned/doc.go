// Package selfsigned keeps the webhook's serving certificate when cert-manager is not installed
// (`webhook serve --tls-mode=self-signed`).
//
// One Secret (type kubernetes.io/tls, in the webhook's namespace) holds everything, so that every
// replica serves a certificate from the same CA:
//
//	ca.crt   the CA bundle the API server trusts: the current CA first, then at most the CAs a
//	         serving certificate still in use may chain to (during a CA rotation)
//	ca.key   the current CA's private key (ECDSA P-256, SEC1 PEM)
//	tls.crt  the serving certificate (ECDSA P-256), signed by a CA of ca.crt
//	tls.key  its private key
//
// Every replica runs the same loop (Manager.Run): read the Secret, create it when absent (the loser
// of a create race reads the winner's), renew what is due with an optimistic-concurrency Update
// (the loser of an update race starts over from the winner's Secret), write tls.crt and tls.key
// into the cert dir that controller-runtime's certwatcher reloads, and patch the caBundle of every
// webhook of its MutatingWebhookConfiguration when it differs from ca.crt. No leader election:
// every write is conditional, so replicas converge on one Secret.
//
// Lifetimes: CA 10 years, serving certificate 1 year; each is renewed when less than a third of
// its validity remains (by default), checked at start and every minute, or at once when the
// Secret carries the annotation kratos-injector.io/renew (RequestRenewal, `webhook tls renew`).
//
// Rotation never fails an admission. A serving certificate renewed from the same CA changes
// nothing the API server trusts. A new CA is added to ca.crt (and the caBundle) next to the old
// one, and signs serving certificates only after the rotation grace, once every API server has
// seen the new caBundle; the old CA leaves the bundle one grace after the serving certificate
// moved to the new CA, once every replica has loaded it.
//
// Who can read ca.key: whoever can read the Secret — the webhook's ServiceAccount (its Role names
// this one Secret) and the namespace's administrators. The CA is trusted by nothing but this
// webhook configuration's caBundle, so its key reaches exactly as far as tls.key does: a holder
// could impersonate the webhook only if it could also redirect the Service, which a namespace
// administrator can do anyway.
package selfsigned
