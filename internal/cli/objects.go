package cli

import (
	"encoding/json"
	"fmt"

	client "github.com/ory/kratos-client-go"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kratos-injector/kratos-injector/internal/actions"
)

// kubectl's printers (-o name, jsonpath, go-template, custom-columns) work on runtime.Objects
// with a kind and a name. Kratos's identities are not Kubernetes objects, so the plugin prints
// them as unstructured objects of its own API group, which no API server serves:
//
//	apiVersion: kratos-injector.io/v1alpha1
//	kind: Identity          (OIDCAccount for `identity oidc list`)
//	metadata: {name: <identity ID>}   (<provider>:<subject> for an OIDCAccount)
//	...every field of Kratos's answer, unchanged, at the top level (id, traits, state, ...)
//
// Several objects are a kubectl List (apiVersion v1, kind List, items), as `kubectl get -o json`
// prints them. Kratos's identity has no field named apiVersion, kind or metadata (its metadata
// are metadata_public and metadata_admin), so nothing of Kratos's answer is hidden or renamed:
// `jq .traits` works on the Identity as on Kratos's JSON.
const (
	// ObjectAPIVersion is the apiVersion of the objects the plugin prints.
	ObjectAPIVersion = "kratos-injector.io/v1alpha1"
	kindIdentity     = "Identity"
	kindOIDCAccount  = "OIDCAccount"
)

// identityObject is an identity as an unstructured Identity object.
func identityObject(i *client.Identity) (*unstructured.Unstructured, error) {
	return toObject(kindIdentity, i.Id, i)
}

func toObject(kind, name string, v interface{}) (*unstructured.Unstructured, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s %s: %w", kind, name, err)
	}
	m := map[string]interface{}{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("encode %s %s: %w", kind, name, err)
	}
	m["apiVersion"] = ObjectAPIVersion
	m["kind"] = kind
	m["metadata"] = map[string]interface{}{"name": name}
	return &unstructured.Unstructured{Object: m}, nil
}

// identityList is identities as a kubectl List.
func identityList(ids []client.Identity) (*unstructured.UnstructuredList, error) {
	l := newList()
	for i := range ids {
		o, err := identityObject(&ids[i])
		if err != nil {
			return nil, err
		}
		l.Items = append(l.Items, *o)
	}
	return l, nil
}

// oidcList is the external accounts of an identity as a List of OIDCAccount objects, each
// carrying the identity's ID.
func oidcList(res *actions.OIDCAccounts) (*unstructured.UnstructuredList, error) {
	l := newList()
	for _, a := range res.Accounts {
		o, err := toObject(kindOIDCAccount, a.Identifier, struct {
			IdentityID string `json:"identity_id"`
			actions.OIDCAccount
		}{res.IdentityID, a})
		if err != nil {
			return nil, err
		}
		l.Items = append(l.Items, *o)
	}
	return l, nil
}

func newList() *unstructured.UnstructuredList {
	l := &unstructured.UnstructuredList{Object: map[string]interface{}{}, Items: []unstructured.Unstructured{}}
	l.SetAPIVersion("v1")
	l.SetKind("List")
	return l
}
