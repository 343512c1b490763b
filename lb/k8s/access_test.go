package k8s

import (
	"context"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// reviews answers SelfSubjectAccessReviews on fc: allowed unless deny
// says otherwise for its attributes, or err for every review.
func reviews(fc *fake.Clientset, deny func(*authorizationv1.ResourceAttributes) bool, err error) {
	fc.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if err != nil {
			return true, nil, err
		}
		r := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview).DeepCopy()
		r.Status.Allowed = deny == nil || !deny(r.Spec.ResourceAttributes)
		return true, r, nil
	})
}

// The access check tells an operator what the journal's client-go
// retries do not: credentials refused, or which permission RBAC lacks.
func TestAccessProblems(t *testing.T) {
	for _, tc := range []struct {
		name string
		deny func(*authorizationv1.ResourceAttributes) bool
		err  error
		want []string
	}{
		{name: "all allowed"},
		{name: "status writes taken away", deny: func(r *authorizationv1.ResourceAttributes) bool { return r.Subresource == "status" },
			want: []string{"may not update services/status", "apply packaging/rbac.yaml"}},
		{name: "no Lease in its namespace", deny: func(r *authorizationv1.ResourceAttributes) bool { return r.Resource == "leases" && r.Verb == "update" },
			want: []string{"may not update leases.coordination.k8s.io in kube-system"}},
		{name: "token expired", err: apierrors.NewUnauthorized("token expired"),
			want: []string{"401 Unauthorized", "expired or was revoked"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fc := fake.NewClientset()
			reviews(fc, tc.deny, tc.err)
			c := newController(t, fc, testConfig(t, mainPool), "lb1")
			got := c.checkAccess(context.Background())
			if len(tc.want) == 0 && got != "" {
				t.Fatalf("problem %q with every permission", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("problem %q lacks %q", got, w)
				}
			}
		})
	}
}
