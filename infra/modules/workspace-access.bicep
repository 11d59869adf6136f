// Deployed into the resource group of ONE Azure ML workspace in scope.
// Creates a custom role holding exactly the Azure ML management-plane actions the DSR workers
// call, assignable only at that workspace, and assigns it to the app identity there.
// Action names: Azure resource provider operations for Microsoft.MachineLearningServices
// (learn.microsoft.com, "Azure permissions for AI + machine learning").
targetScope = 'resourceGroup'

param workspaceName string
param principalId string
@description('Also allow DELETE on the workspace itself (needed only to purge a soft-deleted workspace with forceToPurge=true). Off by default.')
param allowWorkspacePurge bool = false

var baseActions = [
  // resolve the workspace (location, default storage, linked App Insights)
  'Microsoft.MachineLearningServices/workspaces/read'
  // resolve datastores (e.g. workspaceworkingdirectory -> file share for notebooks); NOT listsecrets
  'Microsoft.MachineLearningServices/workspaces/datastores/read'
  // slice "jobs": list/get jobs, delete jobs, poll the delete
  'Microsoft.MachineLearningServices/workspaces/jobs/read'
  'Microsoft.MachineLearningServices/workspaces/jobs/delete'
  'Microsoft.MachineLearningServices/workspaces/jobs/operationresults/read'
  // slice "models": containers + versions
  'Microsoft.MachineLearningServices/workspaces/models/read'
  'Microsoft.MachineLearningServices/workspaces/models/delete'
  'Microsoft.MachineLearningServices/workspaces/models/versions/read'
  'Microsoft.MachineLearningServices/workspaces/models/versions/delete'
  // slice "data": containers + versions
  'Microsoft.MachineLearningServices/workspaces/data/read'
  'Microsoft.MachineLearningServices/workspaces/data/delete'
  'Microsoft.MachineLearningServices/workspaces/data/versions/read'
  'Microsoft.MachineLearningServices/workspaces/data/versions/delete'
  // slice "compute": personal compute instances
  'Microsoft.MachineLearningServices/workspaces/computes/read'
  'Microsoft.MachineLearningServices/workspaces/computes/delete'
]
var purgeActions = allowWorkspacePurge ? [
  'Microsoft.MachineLearningServices/workspaces/delete'
] : []

resource ws 'Microsoft.MachineLearningServices/workspaces@2024-04-01' existing = {
  name: workspaceName
}

resource role 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(ws.id, 'azureml-dsr-worker')
  properties: {
    // Role names are unique per tenant: include a hash of the workspace id.
    roleName: 'AzureML DSR worker ${workspaceName} ${uniqueString(ws.id)}'
    description: 'azureml-dsr: read and delete the Azure ML assets that hold a data subject\'s personal data (jobs, models, data, computes) in one workspace.'
    type: 'CustomRole'
    assignableScopes: [
      ws.id
    ]
    permissions: [
      {
        actions: concat(baseActions, purgeActions)
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(ws.id, principalId, role.id)
  scope: ws
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: role.id
  }
}

output roleDefinitionId string = role.id
