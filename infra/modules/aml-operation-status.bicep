// Deployed once per subscription that holds workspaces in scope.
// Azure ML long-running deletes answer 202 + a Location/Azure-AsyncOperation URL under
// /subscriptions/<sub>/providers/Microsoft.MachineLearningServices/locations/<loc>/...;
// polling it is authorised at that location scope, which a workspace-scoped role does not
// cover. This role holds only the read-only operation-status actions.
targetScope = 'subscription'

param principalId string

resource role 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'azureml-dsr-operation-status')
  properties: {
    roleName: 'AzureML DSR operation status reader ${uniqueString(subscription().id)}'
    description: 'azureml-dsr: read the status of Azure ML long-running operations (no access to any asset).'
    type: 'CustomRole'
    assignableScopes: [
      subscription().id
    ]
    permissions: [
      {
        actions: [
          'Microsoft.MachineLearningServices/locations/mfeOperationResults/read'
          'Microsoft.MachineLearningServices/locations/mfeOperationsStatus/read'
          'Microsoft.MachineLearningServices/locations/computeoperationsstatus/read'
          'Microsoft.MachineLearningServices/locations/workspaceOperationsStatus/read'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, role.id)
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: role.id
  }
}
