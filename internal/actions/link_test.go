package actions

import "testing"

func TestNextPageToken(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values []string
		want   string
	}{
		{"first and next", []string{`<http://h/admin/identities?page_size=2&page_token=eyJpZCI6IjEifQ>; rel="first",<http://h/admin/identities?page_size=2&page_token=eyJpZCI6IjIifQ>; rel="next"`}, "eyJpZCI6IjIifQ"},
		{"last page: first only", []string{`<http://h/admin/identities?page_size=2&page_token=a>; rel="first"`}, ""},
		{"separate header values", []string{`<http://h/x?page_token=a>; rel="first"`, `<http://h/x?page_token=b>; rel="next"`}, "b"},
		{"unquoted rel, extra params", []string{`<http://h/x?page_token=c>; title="n"; rel=next`}, "c"},
		{"escaped token", []string{`<http://h/x?page_token=a%2Bb%3D>; rel="next"`}, "a+b="},
		{"no header", nil, ""},
		{"garbage", []string{`rel="next"`}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := nextPageToken(tc.values); got != tc.want {
				t.Fatalf("nextPageToken() = %q, want %q", got, tc.want)
			}
		})
	}
}
